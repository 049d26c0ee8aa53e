/**
 * The broker side of the scale model (bench/scale-model.ts): one broker
 * choosing among N announced executors, in this process. The capacity table
 * is the real CapacityService fed N signed-origin announcements per round
 * the way gossipsub hands them over (its 'message' event), each after the
 * Ed25519 signature check gossipsub makes on every message it receives; the
 * broker is the real Broker with a real JobStore (SQLite in a temp folder),
 * its TaskNetwork reading executors from that service as MeshTaskNetwork
 * does; the simulated executors accept every offer and answer every dispatch
 * at once, so what is timed is the broker's own work: ranking, the slot
 * ledger, the store, the replica bookkeeping.
 */
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fullGc } from './gc.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { TypedEventEmitter, type PeerId, type PrivateKey } from '@libp2p/interface'
import { Broker, type ExecutorInfo, type TaskNetwork, type TaskRunResult } from '../../src/broker/broker.ts'
import { JobStore } from '../../src/broker/job-store.ts'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { createLogger, type Logger } from '../../src/log/logger.ts'
import { CAPACITY_TOPIC, CapacityService, encodeCapacityAnnouncement, type CapacityPubSub, type CapacityPubSubEvents } from '../../src/protocols/capacity/index.ts'

export interface BrokerPoint {
  n: number
  /** broker CPU to take in one announce round of N announcements (verify + decode + table), ms */
  roundCpuMs: number
  /** of which the Ed25519 checks gossipsub makes, ms */
  verifyCpuMs: number
  /** `executors()` (the table filtered and sorted), one call, ms (median of several) */
  executorsMs: number
  /** submit → final per job, jobs one after another, ms */
  jobMs: number[]
  /** broker CPU per job (this process), ms */
  cpuPerJobMs: number
  /** JS heap held by the table, MB (heapUsed after the rounds − before) */
  heapMb: number
}

/** gossipsub as the capacity service sees it: the bench hands it messages. */
class FedPubSub extends TypedEventEmitter<CapacityPubSubEvents> implements CapacityPubSub {
  subscribe (): void {}
  unsubscribe (): void {}
  async publish (): Promise<unknown> { return undefined }
}

interface Donor { key: PrivateKey, peerId: PeerId, data: Uint8Array, signature: Uint8Array }

async function donors (n: number): Promise<Donor[]> {
  const out: Donor[] = []
  for (let i = 0; i < n; i++) {
    const key = await generateKeyPair('Ed25519')
    const peerId = peerIdFromPrivateKey(key)
    const data = encodeCapacityAnnouncement({
      peerId: peerId.toString(), acceptsJobs: true, slots: 2, freeSlots: 2, maxLimits: DEFAULT_JOB_LIMITS,
      addrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${peerId.toString()}/p2p-circuit/p2p/${peerId.toString()}`], ts: Date.now()
    })
    out.push({ key, peerId, data, signature: await key.sign(data) })
  }
  return out
}

function quietLogger (): Logger {
  const base = createLogger('bench.broker-model')
  const quiet: Logger = { ...base, debug: () => {}, info: () => {}, trace: () => {}, child: () => quiet }
  return quiet
}

function cpuMs (): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** One announce round: every donor's message checked and handed to the service. */
async function feedRound (pubsub: FedPubSub, all: Donor[]): Promise<{ cpu: number, verify: number }> {
  const c0 = cpuMs()
  let verify = 0
  for (const d of all) {
    const v0 = cpuMs()
    if (!await d.key.publicKey.verify(d.data, d.signature)) throw new Error('an announcement did not verify')
    verify += cpuMs() - v0
    pubsub.safeDispatchEvent('message', { detail: { type: 'signed', from: d.peerId, topic: CAPACITY_TOPIC, data: d.data } })
  }
  return { cpu: cpuMs() - c0, verify }
}

/** A TaskNetwork over the capacity table whose executors accept and answer at once, each in its own /24. */
function instantNetwork (capacity: CapacityService): TaskNetwork {
  const ips = new Map<string, string>()
  return {
    executors: (): ExecutorInfo[] => capacity.executors().map(c => ({ peerId: c.peerId, acceptsJobs: c.acceptsJobs, freeSlots: c.freeSlots, slots: c.slots, updatedAt: capacity.heardAt(c.peerId), maxLimits: c.maxLimits })),
    offer: async () => ({ accept: true }),
    locate: async (executor) => {
      let ip = ips.get(executor)
      if (ip == null) { const k = ips.size; ip = `10.${(k >> 8) & 255}.${k & 255}.1`; ips.set(executor, ip) }
      return ip
    },
    dispatch: async (): Promise<TaskRunResult> => {
      const stdout = new TextEncoder().encode('7')
      return {
        path: 'relayed',
        outcome: { status: 'succeeded', exitCode: 0, outputCid: 'bafy-model', fuelUsed: 1, durationMs: 1, receiptVerified: true, stdoutSize: stdout.length, stderrSize: 0 },
        receipt: new Uint8Array([1]),
        receiptSignature: new Uint8Array([2]),
        stdout,
        stderr: new Uint8Array()
      }
    },
    waitForExecutors: async (ms, signal) => { await new Promise<void>(resolve => { const t = setTimeout(resolve, Math.min(ms, 50)); signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true }) }) }
  }
}

async function runJobs (broker: Broker, jobs: number): Promise<{ ms: number[], cpu: number }> {
  const ms: number[] = []
  const c0 = cpuMs()
  for (let j = 0; j < jobs; j++) {
    const t0 = performance.now()
    const { jobId } = broker.submit({ module: new Uint8Array([0, 97, 115, 109]), moduleCid: 'bafkrei-module', input: new TextEncoder().encode(String(j)), inputCid: `bafkrei-input-${j}`, replicas: 3 })
    while (broker.getJob(jobId).job.final == null) await new Promise(resolve => setImmediate(resolve))
    ms.push(performance.now() - t0)
  }
  return { ms, cpu: (cpuMs() - c0) / jobs }
}

/** The model at one N: the table filled by `rounds` announce rounds, then `jobs` jobs of 3 replicas one after another. */
export async function brokerPoint (n: number, dir: string, opts: { rounds: number, jobs: number }): Promise<BrokerPoint> {
  const all = await donors(n)
  const pubsub = new FedPubSub()
  const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const registrar = { handle: async () => {}, unhandle: async () => {}, register: async () => 'topology', unregister: () => {} }
  const opener = { openStream: async () => { throw new Error('the model opens no streams') } }
  const capacity = new CapacityService({ peerId: self, registrar, connectionManager: opener, pubsub }, { listen: 'always', queryOnConnect: false, logger: quietLogger() })
  await capacity.start()
  capacity.afterStart()
  // a full GC before each heap reading, so the table's heap is what it holds, not garbage
  fullGc()
  const heap0 = process.memoryUsage().heapUsed
  const rounds: Array<{ cpu: number, verify: number }> = []
  for (let r = 0; r < opts.rounds; r++) rounds.push(await feedRound(pubsub, all))
  fullGc()
  const heapMb = (process.memoryUsage().heapUsed - heap0) / 2 ** 20
  const calls: number[] = []
  for (let i = 0; i < 11; i++) { const t0 = performance.now(); capacity.executors(); calls.push(performance.now() - t0) }
  const store = new JobStore(join(dir, `broker-${n}.sqlite`))
  const broker = new Broker({ store, network: instantNetwork(capacity), self: self.toString(), logger: quietLogger() })
  broker.start()
  try {
    const jobs = await runJobs(broker, opts.jobs)
    const last = rounds.slice(1).length > 0 ? rounds.slice(1) : rounds
    return {
      n,
      roundCpuMs: median(last.map(r => r.cpu)),
      verifyCpuMs: median(last.map(r => r.verify)),
      executorsMs: median(calls),
      jobMs: jobs.ms,
      cpuPerJobMs: jobs.cpu,
      heapMb
    }
  } finally {
    await broker.stop()
    await capacity.stop()
    store.close()
  }
}

function median (xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]
}
