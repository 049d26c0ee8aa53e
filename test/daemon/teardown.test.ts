import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { WorldComputeError } from '../../src/core/errors.ts'
import { Teardown } from '../../src/daemon/teardown.ts'
import { recordingLogger } from '../helpers/recording-logger.ts'

class StuckError extends WorldComputeError {
  constructor () {
    super('the part would not stop', 'STUCK')
  }
}

describe('Teardown', () => {
  it('stops the parts last registered first, each once', async () => {
    const stopped: string[] = []
    const teardown = new Teardown({ logger: recordingLogger() })
    for (const name of ['store', 'node', 'api']) teardown.add(name, () => { stopped.push(name) })
    assert.deepEqual(await teardown.stopAll(), [])
    assert.deepEqual(await teardown.stopAll(), [])
    assert.deepEqual(stopped, ['api', 'node', 'store'])
  })

  it('goes on stopping the others when one part fails to stop, logs it with its code, and returns the failure', async () => {
    const stopped: string[] = []
    const logger = recordingLogger()
    const teardown = new Teardown({ logger })
    teardown.add('store', () => { stopped.push('store') })
    teardown.add('node', async () => { throw new StuckError() })
    teardown.add('api', () => { stopped.push('api') })
    const failures = await teardown.stopAll()
    assert.deepEqual(stopped, ['api', 'store'])
    assert.equal(failures.length, 1)
    assert.ok(failures[0] instanceof StuckError)
    assert.deepEqual(logger.lines.map(l => [l.level, l.fields?.code]), [['error', 'STUCK']])
  })

  it('stops one named part ahead of its turn, and not again with the rest', async () => {
    const stopped: string[] = []
    const teardown = new Teardown({ logger: recordingLogger() })
    for (const name of ['store', 'api', 'donor']) teardown.add(name, () => { stopped.push(name) })
    await teardown.stopNow('api')
    await teardown.stopAll()
    assert.deepEqual(stopped, ['api', 'donor', 'store'])
  })

  it('rolls back a failed start by stopping everything and rejecting with the start\'s own error, not a stop failure', async () => {
    const stopped: string[] = []
    const teardown = new Teardown({ logger: recordingLogger() })
    teardown.add('store', () => { stopped.push('store') })
    teardown.add('node', async () => { throw new StuckError() })
    const startFailure = new Error('the API port is taken')
    await assert.rejects(teardown.rollBack(startFailure), (err: unknown) => err === startFailure)
    assert.deepEqual(stopped, ['store'])
  })
})
