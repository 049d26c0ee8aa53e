/**
 * The composition root's start: a step that fails stops what the earlier
 * steps started, and the start rejects with that step's own error.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ApiPortInUseError } from '../../src/api/server.ts'
import { loadDaemonConfig } from '../../src/config/config.ts'
import { startDaemon } from '../../src/daemon/daemon.ts'
import { freePort, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import { close, listen, networkHandles, portOf } from './sockets.ts'

const dir = tempDir('wc-start-')
after(() => { dir.cleanup() })

describe('starting a daemon', () => {
  it('rejects with ApiPortInUseError when the API port is taken, and leaves no libp2p node listening and no socket open', async () => {
    const taken = await listen()
    const apiPort = portOf(taken)
    const libp2pPort = await freePort()
    try {
      const config = loadDaemonConfig({ dataDir: join(dir.path, 'clash'), listen: [`/ip4/127.0.0.1/tcp/${libp2pPort}`], apiPort: String(apiPort) }, {})
      await assert.rejects(startDaemon(config), (err: unknown) => {
        assert.ok(err instanceof ApiPortInUseError, `expected ApiPortInUseError, got ${String(err)}`)
        assert.equal(err.code, 'API_PORT_IN_USE')
        assert.equal(err.port, apiPort)
        return true
      })
      // the node's listener is gone: its port can be bound again at once
      await close(await listen(libp2pPort))
      // and every handle is released but the test's own listener (a closed server's handle goes a few event-loop turns later)
      await waitFor('only the test\'s own listener open', () => JSON.stringify(networkHandles()) === '["TCPServerWrap"]' || undefined, 5_000)
    } finally {
      await close(taken)
    }
  })
})
