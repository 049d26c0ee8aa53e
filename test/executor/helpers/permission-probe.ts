/**
 * Started by sandbox-permission.test.ts under the sandbox's own Node flags: tries what a compromised sandbox
 * would try and reports, over IPC, what each attempt gave (an error code or "allowed").
 */
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'

async function attempt (fn: () => unknown | Promise<unknown>): Promise<string> {
  try {
    const value = await fn()
    // spawnSync reports some failures in its result instead of throwing
    const error = (value as { error?: { code?: string } } | undefined)?.error
    return error !== undefined ? `error:${error.code ?? 'unknown'}` : 'allowed'
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name
  }
}

const [allowedFile, outsideFile, maxPages] = process.argv.slice(2)

const report = {
  writeFile: await attempt(() => { writeFileSync(join(tmpdir(), `wc-probe-${process.pid}.txt`), 'x') }),
  spawnChild: await attempt(() => spawnSync('/bin/true')),
  readOutside: await attempt(() => readFileSync(outsideFile)),
  readExecutorSource: await attempt(() => readFileSync(allowedFile)),
  wasi: await attempt(async () => {
    const { WASI } = await import('node:wasi')
    return new WASI({ version: 'preview1' })
  }),
  worker: await attempt(async () => {
    const w = new Worker('require("node:worker_threads").parentPort.postMessage("up")', { eval: true })
    await new Promise(resolve => w.once('message', resolve))
    await w.terminate()
  }),
  memoryAboveFence: await attempt(() => new WebAssembly.Memory({ initial: Number(maxPages) + 1 })),
  memoryAtFence: await attempt(() => new WebAssembly.Memory({ initial: Number(maxPages) }))
}
process.send?.(report, () => { process.disconnect() })
