/**
 * A PCP gateway for the lab that grants what it is asked (RFC 6887 MAP):
 * run with Node inside a site router's namespace as
 * `portmap-gateway.ts <lan ip> <wan ip>`, it answers on <lan ip>:5351 and
 * installs (or, for lifetime 0, deletes) the iptables DNAT rule that
 * forwards the external port to the requester, printing one line per change
 * (`MAP tcp 4001 10.2.0.2:4001 3600`, `DELETE tcp 4001 10.2.0.2:4001`).
 *
 * It exists because Debian's miniupnpd (2.3.1) forwards nothing when the
 * router's WAN address is in a reserved range, and the lab's "internet" is
 * TEST-NET on purpose: with it the rest of the chain — the announced mapped
 * address, AutoNAT v2's dial-back, a broker's direct dial, removal at stop —
 * runs through a real NAT rule. It answers nothing but PCP MAP.
 */
import { execFileSync } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { decodePcpAddress, encodePcpAddress } from '../../src/net/port-mapping-wire.ts'

const [lanIp, wanIp] = process.argv.slice(2)
if (lanIp == null || wanIp == null) throw new Error('usage: portmap-gateway.ts <lan ip> <wan ip>')
const started = Date.now()
const rules = new Map<string, string[]>()

function iptables (args: string[]): void {
  execFileSync('iptables', ['-t', 'nat', ...args], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 10_000 })
}

function answer (req: Buffer): Buffer | undefined {
  if (req.length < 60 || req[0] !== 2 || req[1] !== 1) return undefined
  const lifetime = req.readUInt32BE(4)
  const client = decodePcpAddress(new Uint8Array(req.subarray(8, 24)))
  const proto = req[36] === 17 ? 'udp' : 'tcp'
  const internalPort = req.readUInt16BE(40)
  const externalPort = req.readUInt16BE(42) === 0 ? internalPort : req.readUInt16BE(42)
  const key = `${proto} ${externalPort}`
  const rule = ['PREROUTING', '-i', 'wan', '-p', proto, '--dport', String(externalPort), '-j', 'DNAT', '--to-destination', `${client}:${internalPort}`]
  const old = rules.get(key)
  if (old != null) { iptables(['-D', ...old]); rules.delete(key) }
  if (lifetime > 0) {
    iptables(['-A', ...rule])
    rules.set(key, rule)
    console.log(`MAP ${proto} ${externalPort} ${client}:${internalPort} ${lifetime}`)
  } else {
    console.log(`DELETE ${proto} ${externalPort} ${client}:${internalPort}`)
  }
  const res = Buffer.alloc(60)
  res[0] = 2
  res[1] = 0x81
  res.writeUInt32BE(lifetime, 4)
  res.writeUInt32BE(Math.floor((Date.now() - started) / 1000), 8)
  req.copy(res, 24, 24, 42)
  res.writeUInt16BE(externalPort, 42)
  res.set(encodePcpAddress(wanIp), 44)
  return res
}

const socket = createSocket('udp4')
socket.on('message', (msg, rinfo) => {
  const res = answer(msg)
  if (res != null) socket.send(res, rinfo.port, rinfo.address)
})
socket.bind(5351, lanIp, () => { console.log(`PCP gateway listening on ${lanIp}:5351`) })
process.on('SIGTERM', () => {
  for (const rule of rules.values()) iptables(['-D', ...rule])
  process.exit(0)
})
