/**
 * Runs the donor's real STUN probe (src/net/stun/probe.ts) inside a lab
 * namespace against one relay and prints the recording as JSON, for the
 * classifier's recorded-response tests (test/fixtures/stun/) and to
 * cross-check what the daemon reports. Bounded by the probe's own timeouts.
 *
 *   stun-record.ts <relay ip> <port> [<port>]
 */
import { recordStunProbe } from '../../src/net/stun/probe.ts'

const [address, ...ports] = process.argv.slice(2)
const rec = await recordStunProbe([{ address, ports: ports.map(Number) }], { timeoutMs: 1500 })
process.stdout.write(JSON.stringify(rec, null, 2) + '\n')
