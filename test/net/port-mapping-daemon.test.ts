/**
 * The loopback guard end to end: a daemon configured like `npm start`'s demo
 * and the in-process tests (listening on 127.0.0.1 only) never starts port
 * mapping discovery, and says why in `status`; the flag and the config key
 * switch it off.
 */
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeFileSync, mkdirSync } from 'node:fs'
import { loadDaemonConfig } from '../../src/config/config.ts'
import { startTestDonor, tempDir } from '../helpers/mesh.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'

const dir = tempDir('wc-portmap-')
after(() => { dir.cleanup() })
const track = stopAfterEach()

/** What `worldcompute demo` gives its relay and what the in-process tests give their nodes. */
const DEMO_LISTEN = ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/udp/0/quic-v1', '/ip4/127.0.0.1/tcp/0/ws']

describe('port mapping in the daemon', () => {
  it('a daemon listening on 127.0.0.1 only (the demo, the tests) does not start discovery: status says not-applicable, with no failure recorded', async () => {
    const donor = track(await startTestDonor(join(dir.path, 'loopback'), [], DEMO_LISTEN))
    const status = await donor.client.call('status', {})
    assert.equal(status.portMapping?.state, 'not-applicable', JSON.stringify(status.portMapping))
    assert.deepEqual(status.portMapping?.mappings, [])
    assert.deepEqual(status.portMapping?.failures, [], 'nothing was asked of any gateway')
    assert.equal(status.portMapping?.protocol, undefined)
  })

  it('--no-port-mapping switches it off, and status says so', async () => {
    const donor = track(await startTestDonor(join(dir.path, 'off'), [], ['/ip4/127.0.0.1/tcp/0'], { noPortMapping: true }))
    const status = await donor.client.call('status', {})
    assert.equal(status.portMapping?.state, 'off')
    assert.match(status.portMapping?.reason ?? '', /--no-port-mapping/)
  })

  it('is on by default for donors, off with the flag or "portMapping": false in config.json, each source named', () => {
    const fresh = join(dir.path, 'config-default')
    assert.equal(loadDaemonConfig({ dataDir: fresh }, {}).portMapping, true)
    assert.equal(loadDaemonConfig({ dataDir: fresh }, {}).sources.portMapping, 'default')
    assert.equal(loadDaemonConfig({ dataDir: fresh, noPortMapping: true }, {}).portMapping, false)
    const fromFile = join(dir.path, 'config-file')
    mkdirSync(fromFile, { recursive: true })
    writeFileSync(join(fromFile, 'config.json'), JSON.stringify({ portMapping: false }))
    const config = loadDaemonConfig({ dataDir: fromFile }, {})
    assert.equal(config.portMapping, false)
    assert.equal(config.sources.portMapping, 'file')
    assert.deepEqual(config.unknownKeys, [])
    writeFileSync(join(fromFile, 'config.json'), JSON.stringify({ portMapping: 'no' }))
    assert.throws(() => loadDaemonConfig({ dataDir: fromFile }, {}), /"portMapping" must be true or false/)
  })
})
