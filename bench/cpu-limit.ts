/**
 * Does `--cpu-limit` hold? One real executor runs a job that spins for ever;
 * the donor controls duty-cycle its sandbox under each limit for a window,
 * and the sandbox's utime + stime from /proc is compared with the same
 * window run without a limit, measured in the same run (interleaved). Prints,
 * per limit, the sandbox's CPU share of one core and the ratio of that share
 * to the limit (1.00×: exactly the limit). Linux only; never asserts.
 *
 *   node_modules/.bin/node bench/cpu-limit.ts        (WC_CPU_LIMITS=10,25,50  WC_CPU_WINDOW_S=4  WC_CPU_ROUNDS=3)
 */
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { DonorControls } from '../src/donor/controls.ts'
import { parsePidStat } from '../src/donor/cpu-sampler.ts'
import { Executor } from '../src/executor/executor.ts'
import { cidForBytes } from '../src/executor/cid.ts'
import { createLogger } from '../src/log/logger.ts'
import { summarize, fmt } from './lib/stats.ts'

const LIMITS = (process.env.WC_CPU_LIMITS ?? '10,25,50').split(',').map(Number)
const WINDOW_MS = Number(process.env.WC_CPU_WINDOW_S ?? '4') * 1000
const ROUNDS = Number(process.env.WC_CPU_ROUNDS ?? '3')
const TICKS_PER_SECOND = 100

const spin = readFileSync(new URL('../test/fixtures/wasm/infinite-loop.wasm', import.meta.url))

/** The sandbox's share of one core, percent, over a window with the given limit (100: none). */
async function share (executor: Executor, limit: number): Promise<number> {
  const controls = new DonorControls({ target: executor, cpuLimit: limit, logger: createLogger('bench.controls') })
  const abort = new AbortController()
  const run = executor.execute({ jobId: `spin-${limit}`, taskId: `spin-${limit}.1`, module: spin, moduleCid: cidForBytes(spin), input: new Uint8Array(0), args: [], env: [], limits: { deadlineMs: 55_000 } }, { signal: abort.signal }).catch(() => undefined)
  controls.setJobs(1)
  await sleep(500)
  const pid = executor.sandboxPid as number
  const ticks = (): number => parsePidStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  const t0 = ticks()
  const w0 = performance.now()
  await sleep(WINDOW_MS)
  const used = (ticks() - t0) / TICKS_PER_SECOND * 1000
  const wall = performance.now() - w0
  controls.setJobs(0)
  controls.stop()
  abort.abort()
  await run
  return used / wall * 100
}

const executor = new Executor({ maxConcurrent: 1 })
await executor.start()
try {
  const base: number[] = []
  const by = new Map<number, number[]>(LIMITS.map(l => [l, []]))
  for (let round = 0; round < ROUNDS; round++) {
    base.push(await share(executor, 100))
    for (const limit of LIMITS) by.get(limit)?.push(await share(executor, limit))
  }
  console.log(`no limit (baseline): ${fmt(summarize(base), '% of one core')}`)
  for (const [limit, values] of by) {
    const s = summarize(values)
    console.log(`--cpu-limit ${limit}: ${fmt(s, '% of one core')}  ratio to the limit ${(s.median / limit).toFixed(2)}×  (to the unlimited baseline ${(s.median / summarize(base).median).toFixed(2)}×)`)
  }
} finally {
  await executor.stop()
}
