import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { networkInterfaces } from 'node:os'
import { errorWithCode } from '../core/errors.ts'
import { parseProxyUrl, type ProxySpec } from './proxy-env.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { QuickJS } from 'quickjs-wasi'

/**
 * Proxy auto-config (PAC) files: a JavaScript `FindProxyForURL(url, host)`
 * written by whoever runs the network, evaluated by pac-resolver inside a
 * QuickJS WebAssembly sandbox (quickjs-wasi) with bounded time and memory.
 * Its answer (`PROXY h:p; SOCKS5 h:p; HTTPS h:p; DIRECT`) becomes the proxy
 * candidates of one dial, in order, as {@link ProxySpec}s the CONNECT/SOCKS
 * tunnels of proxy-tunnel.ts already open.
 *
 * A PAC file comes from the network (WPAD) and is untrusted code: one that
 * does not compile, throws, loops, allocates without end or answers garbage
 * is a {@link PacError} with a stable code, never a crash, and the dial it
 * was asked about has no proxy from it.
 */

/** The PAC does not compile or defines no `FindProxyForURL`. */
export class PacScriptError extends errorWithCode('PAC_SCRIPT_INVALID') {}
/** `FindProxyForURL` threw (or ran out of memory). */
export class PacEvaluationError extends errorWithCode('PAC_EVALUATION_FAILED') {}
/** `FindProxyForURL` ran past its time limit (a loop, or a DNS look-up that never answers). */
export class PacTimeoutError extends errorWithCode('PAC_TIMEOUT') {}
/** `FindProxyForURL` answered something that is not a list of proxies. */
export class PacAnswerError extends errorWithCode('PAC_ANSWER_INVALID') {}

export type PacError = PacScriptError | PacEvaluationError | PacTimeoutError | PacAnswerError

/** One candidate of a PAC answer: a proxy, or a direct dial. */
export type PacRoute = { type: 'direct' } | { type: 'proxy', spec: ProxySpec }

/** @default values of {@link PacEvaluatorInit} */
export const DEFAULT_PAC_TIMEOUT_MS = 2_000
export const DEFAULT_PAC_MEMORY_BYTES = 32 * 1024 * 1024
export const DEFAULT_PAC_MAX_ANSWER_CHARS = 4_096
/** candidates kept from one answer: browsers try a handful, and each costs a dial attempt */
export const MAX_PAC_CANDIDATES = 8

export interface PacEvaluatorInit {
  /** where the PAC came from (a URL), in error messages and as the proxies' `source` */
  source: string
  /** time one `FindProxyForURL` call may take, DNS look-ups included @default 2000 */
  timeoutMs?: number
  /** memory the sandbox may allocate @default 32 MiB */
  memoryLimitBytes?: number
  /** longest answer accepted @default 4096 */
  maxAnswerChars?: number
  /**
   * what the PAC's `myIpAddress()` returns @default the first non-internal
   * IPv4 address of this host (pac-resolver's own asks a public DNS server)
   */
  myIpAddress?: () => string
}

const PAC_KEYWORDS: Record<string, { scheme: string, defaultPort: number } | undefined> = {
  PROXY: { scheme: 'http', defaultPort: 80 },
  HTTP: { scheme: 'http', defaultPort: 80 },
  HTTPS: { scheme: 'https', defaultPort: 443 },
  SOCKS: { scheme: 'socks5', defaultPort: 1080 },
  SOCKS5: { scheme: 'socks5', defaultPort: 1080 }
}

/**
 * The candidates of one PAC answer, in order. Entries we cannot use (SOCKS4,
 * an unknown keyword) are skipped as browsers skip them; an answer with none
 * we can use, that is not a string, or that is longer than `maxChars` is a
 * {@link PacAnswerError}.
 */
export function parsePacAnswer (answer: unknown, source: string, maxChars = DEFAULT_PAC_MAX_ANSWER_CHARS): PacRoute[] {
  if (typeof answer !== 'string') throw new PacAnswerError(`the PAC ${source} answered a ${answer === null ? 'null' : typeof answer}, not a string such as "PROXY host:port; DIRECT"`)
  if (answer.length > maxChars) throw new PacAnswerError(`the PAC ${source} answered ${answer.length} characters (at most ${maxChars} accepted)`)
  const routes: PacRoute[] = []
  for (const entry of answer.split(';')) {
    const route = parsePacEntry(entry.trim(), source)
    if (route != null && routes.length < MAX_PAC_CANDIDATES) routes.push(route)
  }
  if (routes.length === 0) throw new PacAnswerError(`the PAC ${source} answered "${answer.slice(0, 80)}", which names no proxy we can use and not DIRECT`)
  return routes
}

function parsePacEntry (entry: string, source: string): PacRoute | undefined {
  if (entry === '') return undefined
  if (/^DIRECT$/i.test(entry)) return { type: 'direct' }
  const m = /^([A-Z0-9]+)\s+(\S+)$/i.exec(entry)
  const keyword = m != null ? PAC_KEYWORDS[m[1].toUpperCase()] : undefined
  if (m == null || keyword == null) return undefined
  const hostPort = /:\d+$/.test(m[2]) ? m[2] : `${m[2]}:${keyword.defaultPort}`
  try {
    return { type: 'proxy', spec: parseProxyUrl(`${keyword.scheme}://${hostPort}`, `PAC ${source}`) }
  } catch (err) {
    // one unusable entry; the others may still serve
    if ((err as { code?: string }).code === 'CONFIG_INVALID') return undefined
    throw err
  }
}

/** The first non-internal IPv4 address of this host, else 127.0.0.1. */
export function localIpv4 (): string {
  for (const list of Object.values(networkInterfaces())) {
    const found = (list ?? []).find(a => a.family === 'IPv4' && !a.internal)
    if (found != null) return found.address
  }
  return '127.0.0.1'
}

let wasmBytes: Promise<Buffer> | undefined

async function quickJsWasm (): Promise<Buffer> {
  wasmBytes ??= readFile(createRequire(import.meta.url).resolve('quickjs-wasi/quickjs.wasm'))
  return await wasmBytes
}

/**
 * One PAC script in its own sandbox. Calls are serialised: the sandbox runs
 * one `FindProxyForURL` at a time, under one deadline.
 */
export class PacEvaluator {
  readonly source: string
  readonly #vm: QuickJS
  readonly #find: (url: string, host: string) => Promise<string>
  readonly #timeoutMs: number
  readonly #maxAnswerChars: number
  readonly #deadline: { at: number }
  #queue: Promise<unknown> = Promise.resolve()

  private constructor (vm: QuickJS, find: (url: string, host: string) => Promise<string>, deadline: { at: number }, init: PacEvaluatorInit) {
    this.source = init.source
    this.#vm = vm
    this.#find = find
    this.#deadline = deadline
    this.#timeoutMs = init.timeoutMs ?? DEFAULT_PAC_TIMEOUT_MS
    this.#maxAnswerChars = init.maxAnswerChars ?? DEFAULT_PAC_MAX_ANSWER_CHARS
  }

  /** Compiles `script`; a {@link PacScriptError} when it does not compile or defines no `FindProxyForURL`. */
  static async create (script: string, init: PacEvaluatorInit): Promise<PacEvaluator> {
    const { QuickJS } = await import('quickjs-wasi')
    const { createPacResolver } = await import('pac-resolver')
    const deadline = { at: Infinity }
    // checked about once per bytecode instruction: a counter keeps the clock reads rare
    let ticks = 0
    const vm = await QuickJS.create({
      wasm: await quickJsWasm(),
      memoryLimit: init.memoryLimitBytes ?? DEFAULT_PAC_MEMORY_BYTES,
      interruptHandler: () => (++ticks & 0x3ff) === 0 && Date.now() > deadline.at
    })
    const myIp = init.myIpAddress ?? localIpv4
    try {
      deadline.at = Date.now() + (init.timeoutMs ?? DEFAULT_PAC_TIMEOUT_MS)
      const find = createPacResolver(vm, script, { filename: init.source, sandbox: { myIpAddress: () => myIp() } })
      deadline.at = Infinity
      return new PacEvaluator(vm, find, deadline, init)
    } catch (err) {
      vm.dispose()
      throw new PacScriptError(`the PAC ${init.source} cannot be used: ${(err as Error)?.message ?? String(err)}`, { cause: err })
    }
  }

  /** The candidates `FindProxyForURL(url, host)` names, in order. */
  async findProxy (url: string, host: string, options: AbortOptions = {}): Promise<PacRoute[]> {
    const run = this.#queue.then(async () => await this.#evaluate(url, host, options))
    this.#queue = run.catch(() => undefined)
    return await run
  }

  /** The raw answer, checked and parsed. */
  async #evaluate (url: string, host: string, options: AbortOptions): Promise<PacRoute[]> {
    options.signal?.throwIfAborted()
    this.#deadline.at = Date.now() + this.#timeoutMs
    let timer: NodeJS.Timeout | undefined
    // a sandbox function that awaits the host (dnsResolve) is not interrupted by the deadline: the timer is
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new PacTimeoutError(`the PAC ${this.source} did not answer for ${url} within ${this.#timeoutMs} ms`)) }, this.#timeoutMs)
    })
    try {
      const answer = await Promise.race([this.#find(url, host), timeout])
      return parsePacAnswer(answer, this.source, this.#maxAnswerChars)
    } catch (err) {
      throw this.#classify(err, url)
    } finally {
      clearTimeout(timer)
      this.#deadline.at = Infinity
    }
  }

  #classify (err: unknown, url: string): Error {
    if (err instanceof PacTimeoutError || err instanceof PacAnswerError) return err
    const message = (err as Error)?.message ?? String(err)
    if (message === 'interrupted') return new PacTimeoutError(`the PAC ${this.source} ran past ${this.#timeoutMs} ms for ${url} (a loop?)`, { cause: err })
    return new PacEvaluationError(`the PAC ${this.source} failed for ${url}: ${message}`, { cause: err })
  }

  close (): void {
    this.#vm.dispose()
  }
}
