import { Script } from 'node:vm'

/**
 * V8's memory reducer runs the full GCs that give back an idle process's
 * start-up garbage, once the process allocates little. On Node 24 it also
 * asks for a low allocation rate of the embedder's heap (cppgc), and reads a
 * rate of exactly zero, which is what a daemon that never made a cppgc object
 * has, as high: it then waits for its 100 s watchdog, so the clean-up (two
 * full GCs, about 1 ms/s of a 180 s window: docs/scale.md) lands in the
 * donor's idle time, ~130 s after start, instead of ~8 s after start-up's
 * allocations end (`--trace-memory-reducer`: "high alloc, waiting for 8000 ms"
 * until the watchdog). One compiled `vm.Script` is a cppgc object on Node 24:
 * kept, it gives that rate a sample above zero and the clean-up its intended
 * time. It runs once either way; this moves it to the end of the start.
 */
let kept: Script | undefined

/** Called once the daemon has started; later calls do nothing. */
export function letMemoryReducerRun (): void {
  kept ??= new Script('undefined', { filename: 'worldcompute:memory-reducer' })
}
