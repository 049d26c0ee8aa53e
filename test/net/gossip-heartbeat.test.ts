/**
 * A stopped node leaves no gossipsub heartbeat behind: the process that
 * stopped it can exit at once, not one heartbeat interval (10 s on a
 * daemon) later.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { clearHeartbeatOnStop } from '../../src/net/gossip-heartbeat.ts'

describe('gossipsub heartbeat after stop', () => {
  it('clears the pending heartbeat as stop begins, then stops', async () => {
    let fired = false
    const calls: string[] = []
    const gossip = {
      status: { code: 'started', heartbeatTimeout: setTimeout(() => { fired = true }, 50) as ReturnType<typeof setTimeout> | undefined },
      stop: async () => { calls.push('stop'); gossip.status = { code: 'stopped', heartbeatTimeout: undefined } }
    }
    clearHeartbeatOnStop(gossip)
    await gossip.stop()
    await new Promise(resolve => setTimeout(resolve, 120))
    assert.equal(fired, false)
    assert.deepEqual(calls, ['stop'])
  })

  it('leaves an object without the expected shape alone', () => {
    const stop = async (): Promise<void> => {}
    const other = { stop }
    clearHeartbeatOnStop(other)
    assert.equal(other.stop, stop)
    clearHeartbeatOnStop(undefined)
  })

  it('a real mesh node, started and stopped, lets its process exit well within a heartbeat interval', async () => {
    const script = `
      import { generateKeyPair } from '@libp2p/crypto/keys'
      import { MeshNode } from ${JSON.stringify(fileURLToPath(new URL('../../src/net/mesh-node.ts', import.meta.url)))}
      const mesh = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
      await mesh.start()
      // past gossipsub's first heartbeat (100 ms after start), which arms the next one interval later
      await new Promise(resolve => setTimeout(resolve, 400))
      await mesh.stop()
      process.stdout.write(String(Date.now()))
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('../..', import.meta.url)), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const killer = setTimeout(() => { child.kill('SIGKILL') }, 30_000)
    const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
    clearTimeout(killer)
    const exitedAt = Date.now()
    assert.equal(code, 0, `the script failed: ${err}`)
    const stoppedAt = Number(out)
    assert.ok(Number.isFinite(stoppedAt), `no stop time printed: ${out} ${err}`)
    // the daemon's heartbeat interval is 10 s: an exit within 5 s of the stop means no heartbeat held it
    assert.ok(exitedAt - stoppedAt < 5_000, `the process exited ${exitedAt - stoppedAt} ms after the node stopped`)
  })
})
