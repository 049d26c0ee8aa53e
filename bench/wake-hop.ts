/**
 * What one message hop costs when the receiver has been asleep (a
 * diagnostic, not a benchmark row): a timestamp posted to a worker thread
 * (with the sandbox's resource limits) and sent to a forked child (IPC with
 * advanced serialization, as the executor talks to its sandbox), each echoed
 * back at once, after the receiver was left idle for 0, 1, 2, 5, 10 and 20 ms.
 * A job's sandbox call makes four such hops in turn (daemon → sandbox
 * process → its worker → sandbox process → daemon) after the sandbox has
 * idled since the last job, which is where most of its time goes on a
 * machine whose idle CPUs take a while to wake; a bare echo on the bench's
 * busy event loop makes none.
 *
 *   node_modules/.bin/node bench/wake-hop.ts [--quick]
 *
 * Prints the time there (to the sleeping side) and back (to the sender,
 * which slept only while the other side answered), median (min–max) of 200
 * hops per idle gap and receiver (--quick: 50).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { setTimeout as sleep } from 'node:timers/promises'
import { benchMain, type Cleanup } from './lib/report.ts'
import { fmt, summarize } from './lib/stats.ts'

/** Wall-clock milliseconds comparable across threads and processes (each has its own timeOrigin). */
const now = (): number => performance.timeOrigin + performance.now()

interface Stamp { sent: number, echoed?: number }

/** The same limits as the sandbox's worker threads (executor/sandbox-process.ts). */
const WORKER_LIMITS = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32, stackSizeMb: 32 }
const GAPS_MS = [0, 1, 2, 5, 10, 20]

interface Peer {
  name: string
  send: (m: Stamp) => void
  once: (cb: (m: Stamp) => void) => void
}

/** One hop there and one back: [to the receiver, back to the sender], in ms. */
async function hop (peer: Peer): Promise<[number, number]> {
  return await new Promise(resolve => {
    peer.once((m) => { resolve([(m.echoed as number) - m.sent, now() - (m.echoed as number)]) })
    peer.send({ sent: now() })
  })
}

async function measure (peers: Peer[], rounds: number): Promise<void> {
  for (const gap of GAPS_MS) {
    const parts: string[] = []
    for (const peer of peers) {
      const there: number[] = []
      const back: number[] = []
      for (let i = 0; i < rounds; i++) {
        // 0: the next hop as soon as this thread is back on its event loop, with nobody asleep for long
        if (gap > 0) await sleep(gap)
        else await new Promise<void>(resolve => { setImmediate(resolve) })
        const [a, b] = await hop(peer)
        there.push(a)
        back.push(b)
      }
      parts.push(`${peer.name} there ${fmt(summarize(there), 'ms')}, back ${fmt(summarize(back), 'ms')}`)
    }
    process.stdout.write(`idle ${String(gap).padStart(2)} ms before each hop: ${parts.join('; ')}\n`)
  }
}

/** The two receivers, loaded and idle, ended by `cleanup`. */
async function startPeers (cleanup: Cleanup): Promise<Peer[]> {
  const self = fileURLToPath(import.meta.url)
  const worker = new Worker(self, { argv: ['--echo-thread'], resourceLimits: WORKER_LIMITS })
  cleanup.add('stop the echo thread', async () => { await worker.terminate() })
  const child: ChildProcess = fork(self, ['--echo-process'], { serialization: 'advanced' })
  cleanup.add('stop the echo process', () => { child.kill() })
  // both loaded and idle before the first hop
  await sleep(500)
  return [
    { name: 'worker thread', send: (m) => { worker.postMessage(m) }, once: (cb) => { worker.once('message', cb) } },
    { name: 'forked process', send: (m) => { child.send(m) }, once: (cb) => { child.once('message', cb) } }
  ]
}

if (process.argv.includes('--echo-thread')) {
  const { parentPort } = await import('node:worker_threads')
  parentPort?.on('message', (m: Stamp) => { parentPort.postMessage({ ...m, echoed: now() }) })
} else if (process.argv.includes('--echo-process')) {
  process.on('message', (m: Stamp) => { process.send?.({ ...m, echoed: now() }) })
  process.on('disconnect', () => { process.exit(0) })
} else if (import.meta.main) {
  await benchMain('wake-hop', { quick: 60_000, full: 180_000 }, async (args, cleanup) => {
    const rounds = args.quick ? 50 : 200
    const peers = await startPeers(cleanup)
    process.stdout.write(`${rounds} hops per gap and receiver, median (min–max)\n`)
    await measure(peers, rounds)
    return { bench: 'wake-hop', rows: [], notes: [] }
  })
}
