/**
 * The hint that lets V8's memory reducer run its clean-up once a process goes
 * quiet: a child Node process builds and drops a few MB of objects (a full GC
 * starts the reducer), calls `letMemoryReducerRun`, then idles; V8's own
 * trace (`--trace-memory-reducer`) must show the reducer's first GC well
 * before its 100 s watchdog would have forced it.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const MODULE = fileURLToPath(new URL('../../src/daemon/memory-reducer.ts', import.meta.url))

/** builds garbage into the old generation, lets a full GC run, gives the hint, then idles up to 40 s */
const CHILD = `
const { letMemoryReducerRun } = await import(${JSON.stringify(MODULE)})
let keep = []
for (let i = 0; i < 200_000; i++) keep.push({ i, s: 'x' + i })
keep = []
letMemoryReducerRun()
letMemoryReducerRun()
setTimeout(() => {}, 40_000)
`

describe('letting the memory reducer run', () => {
  it('gets V8 to run its first memory-reducing GC within 30 s of the hint, not at its 100 s watchdog', async () => {
    const child = spawn(process.execPath, ['--trace-memory-reducer', '--input-type=module', '-e', CHILD], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    const started = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { resolve(false) }, 30_000)
      child.stdout.setEncoding('utf8')
      child.stdout.on('data', (chunk: string) => {
        out += chunk
        if (out.includes('Memory reducer: started GC #1')) { clearTimeout(timer); resolve(true) }
      })
      child.on('exit', () => { clearTimeout(timer); resolve(false) })
    })
    child.kill()
    assert.ok(started, `no memory-reducing GC within 30 s; V8's trace:\n${out}`)
    assert.doesNotMatch(out, /high alloc/, 'the reducer read the allocation rate as high after the hint')
  })
})
