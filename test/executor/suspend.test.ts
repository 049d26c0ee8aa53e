import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import type { ExecuteRequest } from '../../src/core/job.ts'
import { cidForBytes } from '../../src/executor/cid.ts'
import { Executor } from '../../src/executor/executor.ts'
import { parsePidStat } from '../../src/donor/cpu-sampler.ts'
import { I32, command, s32 } from './helpers/wasm-builder.ts'
import { request } from './helpers/fixtures.ts'

/** A command that counts to `n` in a loop and exits 0: about 2 ns a step on this machine, metered. */
function counter (n: number, deadlineMs: number): ExecuteRequest {
  const module = command({ locals: [[1, I32]], start: [0x03, 0x40, 0x20, 0x00, 0x41, ...s32(1), 0x6a, 0x22, 0x00, 0x41, ...s32(n), 0x49, 0x0d, 0x00, 0x0b] })
  return { jobId: `count-${n}`, taskId: `count-${n}.1`, module, moduleCid: cidForBytes(module), input: new Uint8Array(0), args: [], env: [], limits: { deadlineMs } }
}

/** The process state letter of /proc/<pid>/stat (R running, S sleeping, T stopped). */
function procState (pid: number): string {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3)
}

async function waitForState (pid: number, state: 'T' | 'S'): Promise<void> {
  for (let i = 0; i < 100 && !(state === 'S' ? procState(pid) !== 'T' : procState(pid) === 'T'); i++) await sleep(50)
  assert.equal(state === 'S' ? procState(pid) !== 'T' : procState(pid) === 'T', true, `sandbox ${pid} in state ${procState(pid)}, wanted ${state}`)
}

async function waitForPid (executor: Executor, old: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const pid = executor.sandboxPid
    if (pid != null && pid !== old) return pid
    await sleep(50)
  }
  throw new Error('the sandbox was not restarted within 10 s')
}

function cpuTicks (pid: number): number {
  return parsePidStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))
}

describe('suspending the executor sandbox (donor controls)', () => {
  const executor = new Executor({ maxConcurrent: 1 })
  before(async () => { await executor.start() })
  after(async () => { await executor.stop() })

  it('a job with a 1 s deadline suspended for 1.5 s mid-run still succeeds: suspended time counts against no deadline', async () => {
    // about 0.1 s of running time alone: room for a loaded machine within the 1 s deadline
    const req = counter(50_000_000, 1000)
    const started = performance.now()
    let endedAt = 0
    const result = executor.execute(req).finally(() => { endedAt = performance.now() })
    await sleep(30)
    assert.equal(executor.status().running, 1, 'the job is running when it is suspended')
    executor.setSuspended(true)
    assert.equal(executor.status().suspended, true)
    await sleep(1500)
    executor.setSuspended(false)
    const done = await result
    const wall = endedAt - started
    assert.equal(done.status, 'succeeded', done.error)
    assert.ok(wall >= 1500, `the job ended ${Math.round(wall)} ms after it was sent: it was not suspended mid-run`)
    assert.ok(done.durationMs < wall - 1400, `durationMs ${Math.round(done.durationMs)} leaves the ${Math.round(wall)} ms wall time's suspension out`)
    assert.ok(done.cpuTimeMs != null && done.cpuTimeMs > 10 && done.cpuTimeMs < wall - 1400, `cpuTimeMs ${String(done.cpuTimeMs)} is the thread's own CPU time, the suspension left out`)
  })

  it('a job still over its deadline in running time ends deadline_exceeded after it resumes', async () => {
    const result = executor.execute(request('infinite-loop', { limits: { deadlineMs: 400 } }))
    await sleep(100)
    executor.setSuspended(true)
    await sleep(800)
    executor.setSuspended(false)
    assert.equal((await result).status, 'deadline_exceeded')
  })

  it('a suspended sandbox uses no CPU, and runs again when resumed', { skip: process.platform !== 'linux' }, async () => {
    const controller = new AbortController()
    const result = executor.execute(request('infinite-loop', { limits: { deadlineMs: 30_000 } }), { signal: controller.signal }).catch((err: unknown) => err)
    await sleep(300)
    const pid = executor.sandboxPid as number
    const running0 = cpuTicks(pid)
    await sleep(500)
    const ranTicks = cpuTicks(pid) - running0
    executor.setSuspended(true)
    await sleep(200)
    const held0 = cpuTicks(pid)
    await sleep(1000)
    const heldTicks = cpuTicks(pid) - held0
    executor.setSuspended(false)
    await sleep(500)
    const resumedTicks = cpuTicks(pid) - held0 - heldTicks
    controller.abort()
    await result
    assert.ok(ranTicks >= 5, `the spinning job used ${ranTicks} ticks in 0.5 s before the suspension`)
    assert.ok(heldTicks <= 1, `the suspended sandbox used ${heldTicks} ticks (1/100 s each) in 1 s`)
    assert.ok(resumedTicks >= 5, `the resumed job used ${resumedTicks} ticks in 0.5 s`)
  })

  it('a sandbox restarted after a crash while jobs are suspended starts suspended too', { skip: process.platform !== 'linux' }, async () => {
    executor.setSuspended(true)
    const crashed = executor.sandboxPid as number
    process.kill(crashed, 'SIGKILL')
    const restarted = await waitForPid(executor, crashed)
    // state T: stopped by a signal
    await waitForState(restarted, 'T')
    executor.setSuspended(false)
    await waitForState(restarted, 'S')
    assert.equal((await executor.execute(request('hello'))).status, 'succeeded')
  })

  it('a job sent while the sandbox is suspended waits and runs once it is resumed', async () => {
    executor.setSuspended(true)
    let settled = false
    const result = executor.execute(request('hello')).finally(() => { settled = true })
    await sleep(300)
    assert.equal(executor.status().running, 1)
    assert.equal(settled, false, 'the job did not run while its owner had jobs suspended')
    executor.setSuspended(false)
    assert.equal((await result).status, 'succeeded')
  })

  it('stopping a suspended executor ends its jobs, reported failed', async () => {
    const result = executor.execute(request('infinite-loop', { limits: { deadlineMs: 30_000 } }))
    await sleep(100)
    executor.setSuspended(true)
    await sleep(100)
    // SIGKILL ends a stopped process too: stop() does not wait for a resume that never comes
    await executor.stop()
    assert.equal((await result).status, 'failed')
    executor.setSuspended(false)
  })
})
