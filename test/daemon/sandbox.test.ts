import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { WorldComputeError } from '../../src/core/errors.ts'
import { SandboxKeeper } from '../../src/daemon/sandbox.ts'
import type { Fields, Level, Logger } from '../../src/log/logger.ts'

function recordingLogger (): Logger & { lines: Array<{ level: Level, msg: string, fields?: Fields }> } {
  const lines: Array<{ level: Level, msg: string, fields?: Fields }> = []
  const at = (level: Level) => (msg: string, fields?: Fields): void => { lines.push({ level, msg, fields }) }
  const logger: Logger & { lines: typeof lines } = {
    component: 'test', lines, error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), trace: at('trace'), enabled: () => true, child: () => logger
  }
  return logger
}

class SpawnFailedError extends WorldComputeError {
  constructor () {
    super('the sandbox process exited at once', 'SANDBOX_SPAWN_FAILED')
  }
}

/** An executor whose first `failures` starts fail. */
function flakyExecutor (failures: number): { start: () => Promise<void>, starts: number } {
  const fake = {
    starts: 0,
    start: async (): Promise<void> => {
      fake.starts++
      if (fake.starts <= failures) throw new SpawnFailedError()
    }
  }
  return fake
}

const FAST = { initialMs: 1, maxMs: 4 }

describe('SandboxKeeper', () => {
  it('says why the donor takes no jobs while the sandbox is down, and calls back once a retry brings it up', async () => {
    const executor = flakyExecutor(3)
    const logger = recordingLogger()
    const keeper = new SandboxKeeper({ executor, logger, retry: FAST })
    let cameUp: () => void = () => {}
    const up = new Promise<void>(resolve => { cameUp = resolve })
    assert.equal(keeper.unavailable(), undefined)
    // the first start, beside joining the mesh, fails
    await assert.rejects(executor.start(), SpawnFailedError)
    keeper.startFailed(new SpawnFailedError(), () => { cameUp() })
    assert.match(keeper.unavailable() ?? '', /the executor sandbox is not running/)
    await up
    assert.equal(keeper.unavailable(), undefined)
    assert.equal(executor.starts, 4)
    assert.deepEqual(logger.lines.map(l => [l.level, l.fields?.code]), [
      ['error', 'SANDBOX_SPAWN_FAILED'], ['error', 'SANDBOX_SPAWN_FAILED'], ['error', 'SANDBOX_SPAWN_FAILED'], ['info', undefined]
    ])
    keeper.stop()
  })

  it('stops retrying once stopped', async () => {
    const executor = flakyExecutor(Infinity)
    const keeper = new SandboxKeeper({ executor, logger: recordingLogger(), retry: { initialMs: 20, maxMs: 20 } })
    keeper.startFailed(new SpawnFailedError(), () => { assert.fail('the sandbox never comes up') })
    keeper.stop()
    await new Promise(resolve => setTimeout(resolve, 60))
    assert.equal(executor.starts, 0)
  })
})
