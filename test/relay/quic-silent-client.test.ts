/**
 * The relay's liveness check pings no QUIC client: a QUIC client that falls
 * silent (its host frozen or gone, no packet sent) is closed by QUIC's own
 * idle timeout, the smaller of both ends' (RELAY_QUIC_LIVENESS, and a
 * donor's DONOR_QUIC_LIVENESS), well before the check's once-a-minute round
 * would reach it. The client is a real `worldcompute daemon` reserving
 * over QUIC on 127.0.0.1, frozen with SIGSTOP (its kernel sends nothing, as
 * for a machine that lost power); the relay is in-process, built as the
 * composition root builds one.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { DONOR_QUIC_LIVENESS, RELAY_QUIC_LIVENESS } from '../../src/net/pinger.ts'
import { transportOf } from '../../src/net/transport-of.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { startCli } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import { startGuardedRelay } from './helpers.ts'

const dir = tempDir('wc-quic-silent-')
const track = stopAfterEach()
after(() => { dir.cleanup() })

describe('a QUIC relay client that falls silent', () => {
  it('has its connection closed by the QUIC idle timeout, with no liveness ping', async (t) => {
    const relay = track(await startGuardedRelay({ listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/udp/0/quic-v1'] }))
    const relayId = relay.addr.split('/p2p/')[1]
    const quicAddr = relay.listenAddrs.find(a => a.startsWith('/ip4/127.0.0.1/udp/') && a.includes('/quic-v1'))
    assert.ok(quicAddr != null, `the relay listens on QUIC: ${relay.listenAddrs.join(' ')}`)
    const bootstrap = quicAddr.includes('/p2p/') ? quicAddr : `${quicAddr}/p2p/${relayId}`
    const donor = startCli(['daemon', '--data-dir', join(dir.path, 'donor'), '--api-port', '0', '--no-execute', '--listen', '/p2p-circuit', '--bootstrap', bootstrap])
    // a frozen process cannot handle the stop's SIGTERM: thawed first
    track({ stop: async () => { donor.proc.kill('SIGCONT'); await donor.stop() } })

    const quicClients = (): number => relay.mesh.components.connections.open().filter(c => c.status === 'open' && transportOf(c.remoteAddr) === 'quic').length
    await waitFor('the donor reserved on the relay over QUIC', () => relay.service.reservationCount() === 1 && quicClients() > 0 ? true : undefined, 30_000)
      .catch((err: Error) => { throw new Error(`${err.message}; donor stderr:\n${donor.stderr()}`) })

    const frozenAt = Date.now()
    donor.proc.kill('SIGSTOP')
    await waitFor('the relay to close the silent client\'s QUIC connection', () => quicClients() === 0 ? true : undefined, 30_000)
    const closedMs = Date.now() - frozenAt
    const idleMs = Math.min(RELAY_QUIC_LIVENESS.maxIdleTimeout, DONOR_QUIC_LIVENESS.maxIdleTimeout)
    t.diagnostic(`QUIC client frozen; its connection closed at the relay ${closedMs} ms later (idle timeout ${idleMs} ms, the smaller of both ends')`)
    // counted from the last packet heard, up to one client keep-alive before the freeze; closed sooner would not be for silence
    assert.ok(closedMs >= idleMs - DONOR_QUIC_LIVENESS.keepAliveInterval, `closed after ${closedMs} ms: sooner than the idle timeout`)
    // the relay's own idle timeout bounds it whatever the client asked, plus the relay's event loop and the poll
    assert.ok(closedMs < RELAY_QUIC_LIVENESS.maxIdleTimeout + 5_000, `closed after ${closedMs} ms`)
  })
})
