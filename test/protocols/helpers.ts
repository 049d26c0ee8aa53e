/**
 * Real libp2p nodes in one process on 127.0.0.1 for the protocol tests, and
 * a deterministic stand-in for the executor (the executor has its own tests).
 */
import { afterEach, beforeEach } from 'node:test'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { rawCidString } from '../../src/codec/cid.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import type { ExecuteRequest, ExecuteResult } from '../../src/core/job.ts'
import type { PrivateKey } from '@libp2p/interface'
import type { AdmitTask } from '../../src/protocols/dispatch/index.ts'

/** Admits every dispatch: for tests of the protocol's mechanics, where the offer-before-dispatch rule is not the subject. */
export const admitAll: AdmitTask = () => ({ admitted: true, release: () => {} })

export interface TestNodeInit {
  /** protocol services under test, by name */
  services?: Record<string, (components: any) => unknown>
  /** @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** add gossipsub as `pubsub`, before the services under test */
  pubsub?: boolean
  /** run a circuit relay v2 server with job-sized limits */
  relayServer?: boolean
  /** the node's identity; generated when absent */
  privateKey?: PrivateKey
}

export async function createTestNode (init: TestNodeInit = {}): Promise<Libp2p<Record<string, any>>> {
  const services: Record<string, (components: any) => unknown> = {
    identify: identify({ runOnLimitedConnection: true })
  }
  if (init.pubsub === true) {
    services.pubsub = gossipsub({ runOnLimitedConnection: true, allowPublishToZeroTopicPeers: true, emitSelf: false })
  }
  if (init.relayServer === true) {
    services.relay = circuitRelayServer({
      reservations: { applyDefaultLimit: true, defaultDataLimit: BigInt(64 * 1024 * 1024), defaultDurationLimit: 3_600_000 }
    })
  }
  Object.assign(services, init.services ?? {})
  return await createLibp2p({
    ...(init.privateKey != null ? { privateKey: init.privateKey } : {}),
    addresses: { listen: init.listen ?? ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services
  })
}

/** Stops every node, ignoring none of the errors. */
export async function stopAll (nodes: Array<Libp2p<any> | undefined>): Promise<void> {
  await Promise.all(nodes.map(async n => { await n?.stop() }))
}

/** Collects the project logger's lines instead of printing them. */
export function captureLogs (): { lines: string[], restore: () => void } {
  const lines: string[] = []
  configureLogging({ spec: 'info', sink: (line) => { lines.push(line) } })
  return { lines, restore: () => { resetLogging() } }
}

/**
 * The nodes a test starts and the log lines it captures, for the describe
 * block it is called in: each test starts with no node and a fresh capture;
 * after it, its nodes are stopped and the logger is restored.
 */
export function perTestNodesAndLogs<N extends Libp2p<any>> (): { nodes: N[], logs: { readonly lines: string[] } } {
  const nodes: N[] = []
  let captured: ReturnType<typeof captureLogs> | undefined
  beforeEach(() => { captured = captureLogs() })
  afterEach(async () => {
    await stopAll(nodes.splice(0))
    captured?.restore()
  })
  return { nodes, logs: { get lines () { return captured?.lines ?? [] } } }
}

const enc = new TextEncoder()
const dec = new TextDecoder()

/** ASCII upper-casing of each byte: the output is as long as the input (1 MiB in, 1 MiB out). */
export function upper (bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.byteLength)
  for (let i = 0; i < bytes.byteLength; i++) {
    const b = bytes[i]
    out[i] = b >= 0x61 && b <= 0x7a ? b - 0x20 : b
  }
  return out
}

/**
 * A deterministic runTask: stdout is the input upper-cased, then a line with
 * the args; stderr names the module; fuel is the input length. It counts its
 * calls and remembers the modules it was given.
 */
export function fakeExecutor (opts: { gate?: Promise<void> } = {}): {
  runTask: (req: ExecuteRequest, options: { signal: AbortSignal }) => Promise<ExecuteResult>
  calls: ExecuteRequest[]
} {
  const calls: ExecuteRequest[] = []
  const runTask = async (req: ExecuteRequest, options: { signal: AbortSignal }): Promise<ExecuteResult> => {
    calls.push(req)
    if (opts.gate != null) await opts.gate
    options.signal.throwIfAborted()
    const tail = enc.encode(`\nargs=${req.args.join(',')}`)
    const stdout = new Uint8Array(req.input.byteLength + tail.byteLength)
    stdout.set(upper(req.input))
    stdout.set(tail, req.input.byteLength)
    return {
      status: 'succeeded',
      exitCode: 0,
      stdout,
      stderr: enc.encode(`module ${dec.decode(req.module).slice(0, 32)}`),
      fuelUsed: req.input.byteLength,
      durationMs: 1
    }
  }
  return { runTask, calls }
}

export const MODULE = enc.encode('(module "uppercase v1")')
export const MODULE_CID = rawCidString(MODULE)

export function task (taskId: string, input: Uint8Array, extra: { module?: Uint8Array | null, moduleCid?: string, inputCid?: string, args?: string[] } = {}): {
  jobId: string
  taskId: string
  module?: Uint8Array
  moduleCid: string
  input: Uint8Array
  inputCid: string
  args: string[]
  env: string[]
  limits: { deadlineMs: number }
} {
  const module = extra.module === null ? undefined : (extra.module ?? MODULE)
  const t = {
    jobId: taskId.split('/')[0],
    taskId,
    moduleCid: extra.moduleCid ?? MODULE_CID,
    input,
    inputCid: extra.inputCid ?? rawCidString(input),
    args: extra.args ?? ['--shout'],
    env: ['LANG=C'],
    limits: { deadlineMs: 10_000 }
  }
  return module == null ? t : { ...t, module }
}

export function text (bytes: Uint8Array): string {
  return dec.decode(bytes)
}

export function bytesOf (s: string): Uint8Array {
  return enc.encode(s)
}
