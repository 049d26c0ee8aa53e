/**
 * Does `--cpu-limit` hold? One real executor runs a job that spins for ever;
 * the donor controls duty-cycle its sandbox under each limit for a window,
 * and the sandbox's utime + stime from /proc is compared with the same
 * window run without a limit, measured in the same run (interleaved). Prints,
 * per limit, the sandbox's CPU share of one core and the ratio of that share
 * to the limit (1.00×: exactly the limit). Linux only; never asserts.
 *
 *   node_modules/.bin/node bench/cpu-limit.ts [--quick] [--json-out FILE]   (WC_CPU_LIMITS=10,25,50  WC_CPU_WINDOW_S=4  WC_CPU_ROUNDS=3)
 */
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { DonorControls } from '../src/donor/controls.ts'
import { parsePidStat } from '../src/donor/cpu-sampler.ts'
import { Executor } from '../src/executor/executor.ts'
import { cidForBytes } from '../src/executor/cid.ts'
import { createLogger } from '../src/log/logger.ts'
import { benchMain, progress, row, type BenchRow } from './lib/report.ts'
import { summarize, fmt, type Summary } from './lib/stats.ts'

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

/** The limit as a one-value summary, so the table's baseline column reads "the limit: 25 %". */
function limitSummary (limit: number): Summary {
  return summarize([limit])
}

await benchMain('cpu-limit', { quick: 150_000, full: 330_000 }, async (args, cleanup) => {
  const rounds = args.quick ? 1 : ROUNDS
  const executor = new Executor({ maxConcurrent: 1 })
  await executor.start()
  cleanup.add('stop the executor', async () => { await executor.stop() })
  const base: number[] = []
  const by = new Map<number, number[]>(LIMITS.map(l => [l, []]))
  for (let round = 0; round < rounds; round++) {
    base.push(await share(executor, 100))
    for (const limit of LIMITS) by.get(limit)?.push(await share(executor, limit))
    progress(`round ${round + 1}/${rounds}: unlimited ${base[round].toFixed(1)} %, ${LIMITS.map(l => `${l}: ${(by.get(l)?.[round] ?? NaN).toFixed(1)} %`).join(', ')}`)
  }
  const rows: BenchRow[] = [...by].map(([limit, values]) => row({
    benchmark: `--cpu-limit ${limit}: the sandbox's share of one core`,
    baselineName: 'the limit',
    baseline: limitSummary(limit),
    figure: summarize(values),
    unit: '%',
    ratioLabel: 'share / limit (1.00×: exactly the limit)'
  }))
  const notes = [
    `The sandbox spins (infinite-loop.wasm) for ${WINDOW_MS / 1000} s windows under each limit; its utime + stime from /proc over wall time. Unlimited, same run: ${fmt(summarize(base), '% of one core')}. ${rounds} round(s), limits interleaved. WC_CPU_LIMITS, WC_CPU_WINDOW_S, WC_CPU_ROUNDS change the shape.`
  ]
  return { bench: 'cpu-limit', rows, notes }
})
