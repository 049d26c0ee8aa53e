/**
 * A STUN server with two IPs and two ports on a lab "internet" host, for
 * miniupnpd's `ext_perform_stun`: a router whose WAN address is in a reserved
 * range (every lab WAN address is TEST-NET) maps ports only once STUN shows
 * that nothing in front of it translates or filters. miniupnpd decides that
 * from four Binding requests (no change, change port, change IP, both) that
 * must all be answered, from the asked-for address, with its own address and
 * port: a relay's responder has one IP and answers "change IP" with 420, which
 * miniupnpd counts as filtering. This is the repository's own responder
 * (src/net/stun/responder.ts) given the two IPs it supports.
 *
 *   portmap-stun.ts <ip> <other ip> <port> <other port>
 */
import { StunResponder } from '../../src/net/stun/responder.ts'

const [ip, otherIp, port, otherPort] = process.argv.slice(2)
const responder = new StunResponder({ addresses: [ip, otherIp], ports: [Number(port), Number(otherPort)] })
await responder.start()
process.stdout.write(`listening ${responder.endpoints().map(e => `${e.address}:${e.port}`).join(' ')}\n`)
process.on('SIGTERM', () => { responder.stop().then(() => process.exit(0), (err: unknown) => { process.stderr.write(`${String(err)}\n`); process.exit(1) }) })
