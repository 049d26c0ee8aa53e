import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'

const dir = tempDir('wc-metrics-cli-')
after(() => { dir.cleanup() })

/** The stderr lines that are not empty. */
function lines (stderr: string): string[] {
  return stderr.split('\n').filter(l => l.trim() !== '')
}

describe('--metrics on the command line', () => {
  it('refuses a non-loopback host without --metrics-allow-remote, in one line, before starting anything', async () => {
    for (const command of ['daemon', 'relay']) {
      const res = await runCli([command, '--data-dir', join(dir.path, command), '--listen', '/ip4/127.0.0.1/tcp/0', '--metrics', '0.0.0.0:9464', '--log-format', 'json'])
      assert.notEqual(res.code, 0, command)
      const out = lines(res.stderr)
      assert.equal(out.length, 1, `${command}: one line, got ${res.stderr}`)
      const line = JSON.parse(out[0]) as { level: string, code?: string, msg: string }
      assert.equal(line.level, 'error')
      assert.equal(line.code, 'CONFIG_INVALID')
      assert.match(line.msg, /--metrics-allow-remote/)
    }
  })

  it('stops the daemon with one line naming METRICS_PORT_IN_USE when the metrics port is taken', async () => {
    const holder = createServer()
    await new Promise<void>(resolve => holder.listen(0, '127.0.0.1', resolve))
    const address = holder.address()
    const port = typeof address === 'object' && address != null ? address.port : 0
    try {
      const res = await runCli(['daemon', '--data-dir', join(dir.path, 'taken'), '--listen', '/p2p-circuit', '--api-port', '0', '--no-execute', '--metrics', `127.0.0.1:${port}`, '--log-format', 'json'], { timeoutMs: 60_000 })
      assert.notEqual(res.code, 0)
      const errors = lines(res.stderr).map(l => JSON.parse(l) as { level: string, code?: string, msg: string }).filter(l => l.level === 'error')
      assert.equal(errors.length, 1, res.stderr)
      assert.equal(errors[0].code, 'METRICS_PORT_IN_USE')
      assert.ok(errors[0].msg.includes(`127.0.0.1:${port}`), errors[0].msg)
    } finally {
      await new Promise(resolve => holder.close(resolve))
    }
  })
})
