import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { loadDaemonConfig } from '../../src/config/config.ts'
import { startDaemon } from '../../src/daemon/daemon.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { captureJsonLogs } from '../helpers/logs.ts'
import { FAST_RESERVATION, freePort, relayPeerId, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir()
const { records } = captureJsonLogs()
const track = stopAfterEach()

after(() => { dir.cleanup() })

describe('a bootstrap relay that stays down', () => {
  it('gets a line per failed round while it blips, then one line per summary interval with the count', async () => {
    const relayId = await relayPeerId(join(dir.path, 'relay-never'))
    const target = `/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${relayId}`
    const config = loadDaemonConfig({ dataDir: join(dir.path, 'donor'), bootstrap: [target], listen: ['/p2p-circuit'], apiPort: '0' }, {})
    track(await startDaemon(config, { reservation: { ...FAST_RESERVATION, quietAfterFailures: 3, failureSummaryMs: 1_500 } }))

    const rounds = (): Array<Record<string, unknown>> => records().filter(r => r.component === 'donor.reservation' && r.peer === relayId && typeof r.failures === 'number')
    const summary = await waitFor('a summary line', () => rounds().find(r => typeof r.suppressed === 'number'))
    const failuresLogged = rounds().map(r => r.failures as number)
    // rounds 1–3 each, round 4 says the relay looks down, then only summaries
    assert.deepEqual(failuresLogged.slice(0, 4), [1, 2, 3, 4])
    assert.ok((summary.suppressed as number) >= 1, JSON.stringify(summary))
    assert.ok((summary.failures as number) > 4 + (summary.suppressed as number) - 1, JSON.stringify(summary))
    assert.equal(failuresLogged.length, 5, JSON.stringify(failuresLogged))
  })
})
