import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { DEFAULT_JOB_LIMITS, type ExecuteResult } from '../../src/core/job.ts'
import { ExecutorNotRunningError } from '../../src/executor/errors.ts'
import { Executor } from '../../src/executor/executor.ts'
import { prepareModule } from '../../src/executor/prepare.ts'
import { runModule } from '../../src/executor/run-module.ts'
import { STREAM_CHUNK_BYTES } from '../../src/executor/stream-io.ts'
import { request, text } from './helpers/fixtures.ts'
import { alive } from './helpers/process.ts'

const MiB = 1024 * 1024

function assertStatus (result: ExecuteResult, status: ExecuteResult['status']): void {
  assert.equal(result.status, status, `expected ${status}, got ${result.status}: ${result.error ?? ''}`)
}

describe('Executor running jobs in its sandbox process', () => {
  const executor = new Executor({ maxConcurrent: 2, maxLimits: { memoryBytes: 64 * MiB, deadlineMs: 30_000 } })
  before(async () => { await executor.start() })
  after(async () => { await executor.stop() })

  it('runs a WASI command and returns its stdout, exit code 0, fuel and duration', async () => {
    const result = await executor.execute(request('hello', { args: ['one', 'two words'], env: ['GREETING=bonjour'], moduleName: 'hello.wasm' }))
    assertStatus(result, 'succeeded')
    assert.equal(result.exitCode, 0)
    assert.equal(text(result.stdout), 'hello from wasi\nargv[0]=hello.wasm\nargv[1]=one\nargv[2]=two words\nGREETING=bonjour\n')
    assert.ok(result.stdout instanceof Uint8Array)
    assert.equal(result.stdout.constructor, Uint8Array)
    assert.equal(result.stderr.length, 0)
    assert.ok(result.fuelUsed > 0)
    assert.ok(result.durationMs >= 0)
  })

  it('names argv[0] main.wasm when the request gives no module name', async () => {
    const result = await executor.execute(request('hello'))
    assert.match(text(result.stdout), /^argv\[0\]=main\.wasm$/m)
    assert.match(text(result.stdout), /^GREETING=\(unset\)$/m)
  })

  it('feeds the job input to stdin', async () => {
    const result = await executor.execute(request('upper', { input: 'the quick brown fox\n' }))
    assertStatus(result, 'succeeded')
    assert.equal(text(result.stdout), 'THE QUICK BROWN FOX\n')
  })

  it('takes module and input that are views into larger buffers as exactly their own bytes', async () => {
    const req = request('upper')
    const around = (bytes: Uint8Array): Uint8Array => {
      const big = new Uint8Array(bytes.byteLength + 64).fill(0x7a)
      big.set(bytes, 32)
      return big.subarray(32, 32 + bytes.byteLength)
    }
    const result = await executor.execute({ ...req, module: around(req.module), input: around(new TextEncoder().encode('only these words\n')) })
    assertStatus(result, 'succeeded')
    assert.equal(text(result.stdout), 'ONLY THESE WORDS\n')
  })

  it('streams an input and an output of several chunks through whole and in order, for the fuel of a run in one piece', async () => {
    // every 4 KiB block differs, so a chunk out of place or twice would show
    const input = new Uint8Array(3 * STREAM_CHUNK_BYTES + 5).map((_, i) => 0x61 + ((i + Math.floor(i / 4096)) % 26))
    const req = request('upper', { input, limits: { outputBytes: 8 * MiB } })
    const result = await executor.execute(req)
    assertStatus(result, 'succeeded')
    assert.deepEqual(result.stdout, input.map(b => b - 32))
    const inOnePiece = runModule(prepareModule(req.module, req.moduleCid, { memoryBytes: 64 * MiB, maxCallDepth: DEFAULT_JOB_LIMITS.maxCallDepth }).module,
      { jobId: req.jobId, input, args: [], env: [], fuel: DEFAULT_JOB_LIMITS.fuel, outputBytes: 8 * MiB, maxCallDepth: DEFAULT_JOB_LIMITS.maxCallDepth })
    assert.equal(result.fuelUsed, inOnePiece.fuelUsed)
  })

  it('stops a streamed output at the cap with output_too_large and returns the output up to the cap', async () => {
    const input = new Uint8Array(3 * STREAM_CHUNK_BYTES).fill(0x61)
    const result = await executor.execute(request('upper', { input, limits: { outputBytes: 2 * STREAM_CHUNK_BYTES + 100 } }))
    assertStatus(result, 'output_too_large')
    assert.equal(result.stdout.length, 2 * STREAM_CHUNK_BYTES + 100)
    assert.ok(result.stdout.every(b => b === 0x41))
  })

  it('stops a job of a many-chunk input cancelled as soon as it is sent, and runs the next one', async () => {
    const controller = new AbortController()
    const running = executor.execute(request('upper', { input: new Uint8Array(8 * STREAM_CHUNK_BYTES).fill(0x61), limits: { outputBytes: 16 * MiB } }), { signal: controller.signal })
    controller.abort(new Error('no longer needed'))
    await assert.rejects(running, { name: 'AbortError', code: 'JOB_ABORTED' })
    const next = await executor.execute(request('upper', { input: 'after the cancel\n' }))
    assertStatus(next, 'succeeded')
    assert.equal(text(next.stdout), 'AFTER THE CANCEL\n')
  })

  it('runs big inputs one after another, each to its own output, a shorter one after a longer and after a cancelled one', async () => {
    // the sandbox keeps finished inputs' buffers for the next jobs: no byte of one input may show in another's run
    const controller = new AbortController()
    const cancelled = executor.execute(request('upper', { input: new Uint8Array(4 * STREAM_CHUNK_BYTES).fill(0x62), limits: { outputBytes: 8 * MiB } }), { signal: controller.signal })
    controller.abort(new Error('no longer needed'))
    await assert.rejects(cancelled, { code: 'JOB_ABORTED' })
    for (const [length, letter] of [[3 * STREAM_CHUNK_BYTES, 0x63], [2 * STREAM_CHUNK_BYTES + 17, 0x64], [3 * STREAM_CHUNK_BYTES, 0x65]]) {
      const input = new Uint8Array(length).fill(letter)
      const result = await executor.execute(request('upper', { input, limits: { outputBytes: 8 * MiB } }))
      assertStatus(result, 'succeeded')
      assert.equal(result.stdout.byteLength, length)
      assert.ok(result.stdout.every(b => b === letter - 32), `only ${String.fromCharCode(letter - 32)}s in the output of the input of ${length} bytes`)
    }
  })

  it('runs a compute job to the right answer', async () => {
    const result = await executor.execute(request('primes', { input: '1000000' }))
    assertStatus(result, 'succeeded')
    assert.equal(text(result.stdout), 'primes below 1000000: 78498\n')
  })

  it('reports a non-zero exit as failed with the exit code and keeps stderr', async () => {
    const result = await executor.execute(request('exit-code'))
    assertStatus(result, 'failed')
    assert.equal(result.exitCode, 3)
    assert.equal(text(result.stderr), 'exiting with 3\n')
  })

  it('reports an unreachable trap as failed with the trap text', async () => {
    const result = await executor.execute(request('trap-unreachable'))
    assertStatus(result, 'failed')
    assert.equal(result.error, 'unreachable executed')
    assert.equal(result.exitCode, undefined)
  })

  it('reports division by zero as failed with the trap text', async () => {
    const result = await executor.execute(request('trap-divide-by-zero'))
    assertStatus(result, 'failed')
    assert.equal(result.error, 'integer divide by zero')
    assert.equal(result.errorCode, undefined, 'a trap is the job\'s own outcome')
  })

  it('stops an endless loop at its deadline with deadline_exceeded', async () => {
    const result = await executor.execute(request('infinite-loop', { limits: { deadlineMs: 200 } }))
    assertStatus(result, 'deadline_exceeded')
  })

  it('stops an endless loop with out_of_fuel when the fuel runs out before a long deadline', async () => {
    const result = await executor.execute(request('infinite-loop', { limits: { fuel: 5_000_000, deadlineMs: 30_000 } }))
    assertStatus(result, 'out_of_fuel')
    assert.equal(result.fuelUsed, 5_000_000)
  })

  it('stops endless output with output_too_large and returns the output up to the cap', async () => {
    const result = await executor.execute(request('huge-output', { limits: { outputBytes: 100_000 } }))
    assertStatus(result, 'output_too_large')
    assert.equal(result.stdout.length, 100_000)
    assert.ok(result.stdout.every(b => b === 0x78), 'all of it is the fixture\'s "x"')
  })

  it('lets malloc fail at the memory cap while the program carries on', async () => {
    const result = await executor.execute(request('malloc-until-fail', { limits: { memoryBytes: 16 * MiB } }))
    assertStatus(result, 'succeeded')
    const got = Number(/allocated (\d+) MiB/.exec(text(result.stdout))?.[1])
    assert.ok(got > 0 && got < 16, `got ${got} MiB under a 16 MiB cap`)
  })

  it('grows memory exactly to the cap and no further', async () => {
    const result = await executor.execute(request('memory-grow', { limits: { memoryBytes: 4 * MiB } }))
    assertStatus(result, 'succeeded')
    assert.equal(text(result.stdout), 'pages 64\n')
  })

  it('stops runaway recursion at the call-depth limit with the same fuel every time', async () => {
    const limits = { maxCallDepth: 5_000 }
    const first = await executor.execute(request('deep-recursion', { limits }))
    const second = await executor.execute(request('deep-recursion', { limits }))
    assertStatus(first, 'failed')
    assert.equal(first.error, 'call depth limit 5000 exceeded')
    assert.deepEqual({ ...second, durationMs: 0, cpuTimeMs: 0 }, { ...first, durationMs: 0, cpuTimeMs: 0 })
  })

  it('runs C recursion below the depth limit and stops it above', async () => {
    const shallow = await executor.execute(request('recursion', { args: ['2000'], limits: { maxCallDepth: 3_000 } }))
    assertStatus(shallow, 'succeeded')
    assert.match(text(shallow.stdout), /^depth 2000 checksum \d+\n$/)
    const deep = await executor.execute(request('recursion', { args: ['4000'], limits: { maxCallDepth: 3_000 } }))
    assertStatus(deep, 'failed')
    assert.equal(deep.error, 'call depth limit 3000 exceeded')
  })

  it('reports garbage bytes as invalid_module', async () => {
    const result = await executor.execute(request('garbage'))
    assertStatus(result, 'invalid_module')
    assert.match(result.error ?? '', /not a valid WebAssembly module/)
  })

  it('reports bytes that do not match the CID as invalid_module', async () => {
    const result = await executor.execute(request('hello', { moduleCid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy' }))
    assertStatus(result, 'invalid_module')
    assert.match(result.error ?? '', /not to the moduleCid bafkreigh2aki/)
  })

  for (const [name, reason] of [
    ['simd', /SIMD/],
    ['atomics', /shared memory/],
    ['forbidden-import', /import "env"\."f" is not allowed/]
  ] as const) {
    it(`rejects the ${name} module with the policy reason`, async () => {
      const result = await executor.execute(request(name))
      assertStatus(result, 'rejected')
      assert.match(result.error ?? '', reason)
      assert.equal(result.fuelUsed, 0)
    })
  }

  it('rejects limits above the donor maxima without running anything', async () => {
    const result = await executor.execute(request('hello', { limits: { memoryBytes: 128 * MiB } }))
    assertStatus(result, 'rejected')
    assert.equal(result.error, `limits.memoryBytes ${128 * MiB} is above this donor's maximum of ${64 * MiB}; ask for at most ${64 * MiB}`)
  })

  it('rejects a module whose initial memory is above the job\'s cap', async () => {
    const result = await executor.execute(request('hello', { limits: { memoryBytes: 65536 } }))
    assertStatus(result, 'rejected')
    assert.match(result.error ?? '', /starts at 2 pages/)
  })

  it('rejects a malformed request instead of throwing', async () => {
    const result = await executor.execute({ ...request('hello'), env: ['NOT_A_PAIR'] })
    assertStatus(result, 'rejected')
    assert.match(result.error ?? '', /env must be an array of "KEY=value" strings/)
  })

  it('rejects a payload above limits.payloadBytes', async () => {
    const result = await executor.execute(request('hello', { limits: { payloadBytes: 1000 } }))
    assertStatus(result, 'rejected')
    assert.match(result.error ?? '', /above limits.payloadBytes 1000/)
  })

  it('gives the same stdout and fuel for the same job every time, and other randomness for another jobId', async () => {
    const a1 = await executor.execute(request('clock-random', { jobId: 'job-a' }))
    const a2 = await executor.execute(request('clock-random', { jobId: 'job-a' }))
    const b = await executor.execute(request('clock-random', { jobId: 'job-b' }))
    assertStatus(a1, 'succeeded')
    assert.deepEqual(a2.stdout, a1.stdout)
    assert.equal(a2.fuelUsed, a1.fuelUsed)
    assert.notDeepEqual(b.stdout, a1.stdout)
    assert.match(text(a1.stdout), /^realtime 1704067200\.\d{9}\nmonotonic 0\.\d{9}\nrandom [0-9a-f]{16} [0-9a-f]{16}\narc4random [0-9a-f]{8}\n$/)
  })

  it('queues jobs beyond its slots and completes them all', async () => {
    const ns = [1000, 2000, 3000, 5000, 7000, 11000]
    const expected = [168, 303, 430, 669, 900, 1335]
    const pending = ns.map(async (n, i) => await executor.execute(request('primes', { jobId: `job-${i}`, input: String(n) })))
    assert.deepEqual({ running: executor.status().running, queued: executor.status().queued }, { running: 2, queued: 4 })
    const results = await Promise.all(pending)
    assert.deepEqual(results.map(r => text(r.stdout)), ns.map((n, i) => `primes below ${n}: ${expected[i]}\n`))
  })

  it('rejects with an AbortError when the caller aborts, and stops the job', async () => {
    const controller = new AbortController()
    const running = executor.execute(request('infinite-loop', { limits: { deadlineMs: 30_000 } }), { signal: controller.signal })
    setTimeout(() => { controller.abort(new Error('no longer needed')) }, 50)
    await assert.rejects(running, { name: 'AbortError', code: 'JOB_ABORTED' })
    assert.equal(executor.status().running, 0)
    assertStatus(await executor.execute(request('hello')), 'succeeded')
  })
})

describe('Executor giving a module its sandbox has prepared before', () => {
  const executor = new Executor({ maxConcurrent: 1, maxLimits: { memoryBytes: 64 * MiB } })
  before(async () => { await executor.start() })
  after(async () => { await executor.stop() })
  /** the hello module in a bytes object of its own, and its CID */
  const own = (): { module: Uint8Array, moduleCid: string } => {
    const { module, moduleCid } = request('hello')
    return { module: module.slice(), moduleCid }
  }

  it('does not send the same bytes object again: the sandbox runs the preparation it checked', async () => {
    const { module, moduleCid } = own()
    const first = await executor.execute({ ...request('hello'), module, moduleCid })
    assertStatus(first, 'succeeded')
    // callers do not change a module they handed over; this one does, to show that its bytes are not read again
    module.fill(0)
    const again = await executor.execute({ ...request('hello'), module, moduleCid })
    assertStatus(again, 'succeeded')
    assert.deepEqual(again.stdout, first.stdout)
    assert.equal(again.fuelUsed, first.fuelUsed)
  })

  it('checks other bytes under a kept CID: bytes that do not match it are invalid_module', async () => {
    const { module, moduleCid } = own()
    assertStatus(await executor.execute({ ...request('hello'), module, moduleCid }), 'succeeded')
    const other = module.slice()
    other[other.byteLength - 1] ^= 0xff
    const result = await executor.execute({ ...request('hello'), module: other, moduleCid })
    assertStatus(result, 'invalid_module')
  })

  it('stops a kept module\'s run at its deadline, and runs the module kept again after that', async () => {
    const { module, moduleCid } = request('primes')
    const own = module.slice()
    const job = (input: string, deadlineMs?: number): Promise<ExecuteResult> =>
      executor.execute({ ...request('primes', { input, limits: deadlineMs === undefined ? {} : { deadlineMs } }), module: own, moduleCid })
    assertStatus(await job('10'), 'succeeded')
    // the same bytes object under the same limits: its run starts with the request, the deadline with it
    const started = performance.now()
    const stopped = await job('50000000', 50)
    assertStatus(stopped, 'deadline_exceeded')
    assert.ok(performance.now() - started < 10_000)
    const again = await job('100')
    assertStatus(again, 'succeeded')
    assert.equal(text(again.stdout), 'primes below 100: 25\n')
  })

  it('asks for the bytes of a kept module prepared under other limits, and runs the job', async () => {
    const { module, moduleCid } = own()
    const first = await executor.execute({ ...request('hello'), module, moduleCid })
    assertStatus(first, 'succeeded')
    const result = await executor.execute({ ...request('hello'), module, moduleCid, limits: { memoryBytes: 32 * MiB } })
    assertStatus(result, 'succeeded')
    assert.deepEqual(result.stdout, first.stdout)
  })
})

describe('Executor sending small inputs in the job\'s message', () => {
  const executor = new Executor({ maxConcurrent: 1, inlineInputBytes: 16 })
  before(async () => { await executor.start() })
  after(async () => { await executor.stop() })

  it('gives the same stdout for inputs at, below and above inlineInputBytes (in the message, or streamed)', async () => {
    for (const input of ['', 'a', 'sixteen bytes ok', 'seventeen bytes!!', 'x'.repeat(100_000)]) {
      const result = await executor.execute(request('upper', { input }))
      assertStatus(result, 'succeeded')
      assert.equal(text(result.stdout), input.toUpperCase())
    }
  })

  it('takes an inline input that is a view into a larger buffer as exactly its own bytes', async () => {
    const big = new TextEncoder().encode('zzzzinline wordszzzz')
    const result = await executor.execute(request('upper', { input: big.subarray(4, 16) }))
    assertStatus(result, 'succeeded')
    assert.equal(text(result.stdout), 'INLINE WORDS')
  })

  it('refuses an inlineInputBytes that is not a non-negative integer', () => {
    assert.throws(() => new Executor({ inlineInputBytes: -1 }), RangeError)
    assert.throws(() => new Executor({ inlineInputBytes: 1.5 }), RangeError)
  })
})

describe('Executor when the sandbox process fails', () => {
  it('reports the running job as crashed when the sandbox is killed, then runs the next job in a new sandbox', async () => {
    const executor = new Executor({ maxConcurrent: 1 })
    await executor.start()
    try {
      const firstPid = executor.sandboxPid
      assert.ok(firstPid !== undefined)
      const victim = executor.execute(request('infinite-loop', { limits: { deadlineMs: 30_000 } }))
      const queued = executor.execute(request('hello'))
      assert.deepEqual({ running: executor.status().running, queued: executor.status().queued }, { running: 1, queued: 1 })
      await sleep(100) // let the job reach a worker; the outcome is the same either way
      process.kill(firstPid, 'SIGKILL')

      const crashed = await victim
      assertStatus(crashed, 'failed')
      assert.equal(crashed.errorCode, 'EXECUTOR_CRASHED')
      assert.match(crashed.error ?? '', /killed by SIGKILL/)

      const next = await queued
      assertStatus(next, 'succeeded')
      assert.match(text(next.stdout), /^hello from wasi\n/)
      assert.equal(executor.status().restarts, 1)
      assert.notEqual(executor.sandboxPid, firstPid)
    } finally {
      await executor.stop()
    }
  })

  it('kills and replaces a sandbox that stops answering', async () => {
    const executor = new Executor({ maxConcurrent: 1, hangGraceMs: 500, prepareTimeoutMs: 200 })
    await executor.start()
    const pid = executor.sandboxPid as number
    try {
      process.kill(pid, 'SIGSTOP') // wedged: alive, but silent
      const result = await executor.execute(request('hello', { limits: { deadlineMs: 300 } }))
      assertStatus(result, 'failed')
      assert.equal(result.errorCode, 'EXECUTOR_CRASHED')
      assert.match(result.error ?? '', /did not answer within 1000 ms for job job-hello/)
      assertStatus(await executor.execute(request('hello')), 'succeeded')
    } finally {
      await executor.stop()
    }
  })
})

describe('Executor lifecycle', () => {
  it('refuses jobs before start() and after stop()', async () => {
    const executor = new Executor({ maxConcurrent: 1 })
    await assert.rejects(executor.execute(request('hello')), ExecutorNotRunningError)
    await executor.start()
    await executor.stop()
    await assert.rejects(executor.execute(request('hello')), /the executor is stopped; call start\(\) first/)
  })

  it('a job given while the sandbox is still starting waits for the start and runs', async () => {
    const executor = new Executor({ maxConcurrent: 1 })
    const starting = executor.start()
    assert.equal(executor.status().state, 'starting')
    const result = await executor.execute(request('hello'))
    await starting
    assertStatus(result, 'succeeded')
    assert.match(text(result.stdout), /^hello from wasi$/m)
    await executor.stop()
  })

  it('stops idempotently and reports a job cut short by stop() as failed', async () => {
    const executor = new Executor({ maxConcurrent: 1 })
    await executor.start()
    const running = executor.execute(request('infinite-loop', { limits: { deadlineMs: 30_000 } }))
    const waiting = executor.execute(request('hello'))
    await Promise.all([executor.stop(), executor.stop()])
    assert.deepEqual(await running, { status: 'failed', error: 'executor stopped before the job finished', stdout: new Uint8Array(0), stderr: new Uint8Array(0), fuelUsed: 0, durationMs: (await running).durationMs })
    assert.equal((await waiting).error, 'executor stopped before the job started')
    assert.equal(executor.status().sandboxPid, undefined)
    await executor.stop()
  })

  it('can be started again after stop()', async () => {
    const executor = new Executor({ maxConcurrent: 1 })
    await executor.start()
    await executor.stop()
    await executor.start()
    try {
      assertStatus(await executor.execute(request('hello')), 'succeeded')
    } finally {
      await executor.stop()
    }
  })
})

describe('Executor started on demand', () => {
  it('spawns no sandbox at start(), starts one for the first job, and stops it after the idle time', async () => {
    const executor = new Executor({ maxConcurrent: 1, startOnDemand: true, idleStopMs: 300 })
    try {
      await executor.start()
      assert.deepEqual([executor.status().state, executor.status().onDemand, executor.sandboxPid], ['stopped', true, undefined], 'started, and no sandbox process yet')
      const first = await executor.execute(request('hello'))
      assertStatus(first, 'succeeded')
      assert.match(text(first.stdout), /^hello from wasi$/m)
      const pid = executor.sandboxPid
      assert.equal(executor.status().state, 'running')
      assert.ok(pid != null)
      // two jobs back to back share the sandbox: the idle timer is cut short by the next job
      assertStatus(await executor.execute(request('hello')), 'succeeded')
      assert.equal(executor.sandboxPid, pid)
      for (let i = 0; i < 100 && executor.sandboxPid != null; i++) await sleep(50)
      assert.deepEqual([executor.status().state, executor.sandboxPid], ['stopped', undefined], 'stopped after the idle time')
      // the kill is under way once the executor lets go of it; the process is reaped soon after
      for (let i = 0; i < 100 && alive(pid); i++) await sleep(50)
      assert.equal(alive(pid), false, 'the sandbox process is gone')
      assert.equal(executor.status().restarts, 0, 'an idle stop is not a crash')
      // the next job starts a new sandbox
      assertStatus(await executor.execute(request('hello')), 'succeeded')
      assert.notEqual(executor.sandboxPid, pid)
    } finally {
      await executor.stop()
    }
  })

  it('warm() starts the sandbox ahead of a job without waiting, and the job finds it up', async () => {
    const executor = new Executor({ maxConcurrent: 1, startOnDemand: true })
    try {
      executor.warm()
      assert.equal(executor.status().state, 'stopped', 'not before start()')
      await executor.start()
      executor.warm()
      assert.equal(executor.status().state, 'starting')
      for (let i = 0; i < 200 && executor.status().state !== 'running'; i++) await sleep(25)
      const pid = executor.sandboxPid
      assert.ok(pid != null)
      assertStatus(await executor.execute(request('hello')), 'succeeded')
      assert.equal(executor.sandboxPid, pid, 'the job ran in the warmed sandbox')
    } finally {
      await executor.stop()
    }
  })

  it('still refuses jobs before start() and after stop()', async () => {
    const executor = new Executor({ maxConcurrent: 1, startOnDemand: true })
    await assert.rejects(executor.execute(request('hello')), ExecutorNotRunningError)
    await executor.start()
    await executor.stop()
    await assert.rejects(executor.execute(request('hello')), ExecutorNotRunningError)
    assert.equal(executor.sandboxPid, undefined)
  })

  it('ends a job whose sandbox does not start as EXECUTOR_CRASHED, says why in status and declines for a while', async () => {
    const executor = new Executor({ maxConcurrent: 1, startOnDemand: true, startTimeoutMs: 1 })
    try {
      await executor.start()
      assert.equal(executor.unavailable(), undefined)
      const result = await executor.execute(request('hello'))
      assertStatus(result, 'failed')
      assert.equal(result.errorCode, 'EXECUTOR_CRASHED')
      assert.match(result.error ?? '', /did not start for job job-hello/)
      assert.match(executor.status().lastStartError ?? '', /no "ready" within 1 ms/)
      assert.match(executor.unavailable() ?? '', /did not start for the last job/)
    } finally {
      await executor.stop()
    }
  })
})
