import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { errorWithCode } from '../core/errors.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { PacEvaluator, type PacEvaluatorInit } from './pac.ts'
import { networkFingerprint } from './dial-ladder.ts'
import { redactCredentials } from './proxy-env.ts'
import type { ProxyDiscoveryStatus } from '../core/types.ts'
import type { AbortOptions } from '@libp2p/interface'

/**
 * Where a network tells its hosts about its proxy, read without privileges:
 *
 *  1. a PAC URL the operator named (`--proxy-pac`, config "proxyPac"): used
 *     from the start, nothing else is looked at;
 *  2. DHCP option 252, as the DHCP clients recorded it in their lease files
 *     (dhclient's `option wpad "…"` / `option unknown-252 …`, `WPAD=` in the
 *     key=value leases of systemd-networkd and NetworkManager);
 *  3. DNS: `http://wpad.<domain>/wpad.dat` for each `search` / `domain` of
 *     resolv.conf and its parents down to two labels, as browsers do.
 *
 * WPAD runs only when asked ({@link ProxyDiscovery.start}: no proxy is
 * configured and a direct dial failed), once; the outcome is kept and shown
 * by {@link ProxyDiscovery.status}, and logged once.
 */

/** A PAC URL that cannot be fetched: refused, not found, too large, not a PAC. */
export class PacFetchError extends errorWithCode('PAC_FETCH_FAILED') {}

export type DiscoverySource = NonNullable<ProxyDiscoveryStatus['source']>

/** A directory of DHCP lease files and which of its files to read. */
export interface LeaseDir {
  dir: string
  match: RegExp
}

/** The lease files of dhclient, systemd-networkd and NetworkManager on Debian-like systems. */
export const DEFAULT_LEASE_DIRS: readonly LeaseDir[] = Object.freeze([
  { dir: '/var/lib/dhcp', match: /\.leases?$/ },
  { dir: '/var/lib/dhclient', match: /\.leases?$/ },
  { dir: '/run/systemd/netif/leases', match: /^[^.]/ },
  { dir: '/var/lib/NetworkManager', match: /\.lease$/ }
])

export const DEFAULT_RESOLV_CONF = '/etc/resolv.conf'
export const DEFAULT_PAC_FETCH_TIMEOUT_MS = 5_000
export const DEFAULT_MAX_PAC_BYTES = 1024 * 1024
/** answers kept for `status` */
const MAX_ANSWERS = 16

/** The file-system and HTTP reads discovery makes; tests give fakes. */
export interface ProxyDiscoveryComponents {
  readFile: (path: string) => Promise<string>
  readdir: (dir: string) => Promise<string[]>
  /** the body of an http(s):// or file:// URL, at most `maxBytes` */
  fetchText: (url: string, options: { maxBytes: number, timeoutMs: number }) => Promise<string>
  /** compiles a PAC @default PacEvaluator.create */
  compile?: (script: string, init: PacEvaluatorInit) => Promise<Pick<PacEvaluator, 'findProxy' | 'close' | 'source'>>
}

export interface ProxyDiscoveryInit {
  /** a PAC the operator named: used from the start, and WPAD is not looked for */
  explicit?: { url: string, source: 'flag' | 'config' }
  /** @default DEFAULT_RESOLV_CONF */
  resolvConfPath?: string
  /** @default DEFAULT_LEASE_DIRS */
  leaseDirs?: readonly LeaseDir[]
  /** one PAC download @default 5000 */
  fetchTimeoutMs?: number
  /** largest PAC accepted @default 1 MiB */
  maxPacBytes?: number
  /** limits of the PAC sandbox (pac.ts) */
  pac?: Omit<PacEvaluatorInit, 'source'>
  /**
   * names the network we are on: WPAD's outcome holds for one network, and
   * is looked for again after a move @default networkFingerprint (dial-ladder.ts)
   */
  network?: () => string
  logger?: Logger
}

/** The search domains of a resolv.conf (`search` and `domain` lines), in order, without duplicates. */
export function searchDomains (resolvConf: string): string[] {
  const out: string[] = []
  for (const line of resolvConf.split('\n')) {
    const m = /^\s*(search|domain)\s+(.+?)\s*$/.exec(line.replace(/[#;].*$/, ''))
    if (m == null) continue
    for (const d of m[2].split(/\s+/)) {
      const domain = d.toLowerCase().replace(/\.$/, '')
      if (domain !== '' && !out.includes(domain)) out.push(domain)
    }
  }
  return out
}

/** `http://wpad.<d>/wpad.dat` for each domain and its parents down to two labels (never `wpad.com`). */
export function wpadDnsUrls (domains: readonly string[]): string[] {
  const out: string[] = []
  for (const domain of domains) {
    const labels = domain.split('.')
    for (let i = 0; labels.length - i >= 2; i++) {
      const url = `http://wpad.${labels.slice(i).join('.')}/wpad.dat`
      if (!out.includes(url)) out.push(url)
    }
  }
  return out
}

/**
 * The WPAD URL (DHCP option 252) a lease file holds, the newest when it
 * holds several: dhclient's `option wpad "URL";`, `option unknown-252
 * "URL\000";` or `option unknown-252 68:74:…;`, and `WPAD=URL` lines.
 */
export function wpadFromLease (text: string): string | undefined {
  let found: string | undefined
  const re = /option\s+(?:wpad|unknown-252)\s+(?:"((?:[^"\\]|\\.)*)"|([0-9a-f]{1,2}(?::[0-9a-f]{1,2})*))\s*;|^\s*WPAD=(.+)$/gim
  for (const m of text.matchAll(re)) {
    const raw = m[1] != null ? unescapeDhclient(m[1]) : m[2] != null ? hexBytes(m[2]) : m[3].trim()
    // option 252 is sent NUL-terminated by many servers
    const url = raw.replace(/\0+$/, '').trim()
    if (/^(https?|file):\/\//i.test(url)) found = url
  }
  return found
}

function unescapeDhclient (s: string): string {
  return s.replace(/\\(\d{3}|.)/g, (_m, e: string) => /^\d{3}$/.test(e) ? String.fromCharCode(parseInt(e, 8)) : e)
}

function hexBytes (s: string): string {
  return Buffer.from(s.split(':').map(h => parseInt(h, 16))).toString('latin1')
}

/** Reads http(s):// with fetch and file:// from disk, at most `maxBytes`. */
export async function fetchPacText (url: string, options: { maxBytes: number, timeoutMs: number }): Promise<string> {
  if (url.startsWith('file://')) {
    const text = await readFile(fileURLToPath(url), 'utf8')
    if (Buffer.byteLength(text) > options.maxBytes) throw new PacFetchError(`${url} is larger than ${options.maxBytes} bytes`)
    return text
  }
  const response = await fetch(url, { signal: AbortSignal.timeout(options.timeoutMs), redirect: 'follow' })
  if (!response.ok) {
    await response.body?.cancel()
    throw new PacFetchError(`${redactCredentials(url)} answered HTTP ${response.status}`)
  }
  const declared = Number(response.headers.get('content-length') ?? 0)
  if (declared > options.maxBytes) {
    await response.body?.cancel()
    throw new PacFetchError(`${redactCredentials(url)} is ${declared} bytes (at most ${options.maxBytes} accepted)`)
  }
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength
    if (size > options.maxBytes) throw new PacFetchError(`${redactCredentials(url)} is larger than ${options.maxBytes} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

const NODE_IO: ProxyDiscoveryComponents = {
  readFile: async (path) => await readFile(path, 'utf8'),
  readdir: async (dir) => await readdir(dir),
  fetchText: fetchPacText
}

type Evaluator = Pick<PacEvaluator, 'findProxy' | 'close' | 'source'>

/** Finds the network's PAC once, keeps it, and says what it did. */
export class ProxyDiscovery {
  readonly explicit: boolean
  readonly #init: ProxyDiscoveryInit
  readonly #io: ProxyDiscoveryComponents
  readonly #log: Logger
  #status: ProxyDiscoveryStatus = { state: 'not-needed', looked: [], answers: [] }
  #running: Promise<Evaluator | undefined> | undefined
  #evaluator: Evaluator | undefined
  #closed = false
  /** the network WPAD ran on */
  #network: string | undefined

  constructor (init: ProxyDiscoveryInit = {}, components: Partial<ProxyDiscoveryComponents> = {}) {
    this.#init = init
    this.#io = { ...NODE_IO, ...components }
    this.#log = init.logger ?? createLogger('net.proxy')
    this.explicit = init.explicit != null
  }

  status (): ProxyDiscoveryStatus {
    return { ...this.#status, looked: [...this.#status.looked], answers: [...this.#status.answers] }
  }

  /** The PAC in use, once found. */
  current (): Evaluator | undefined {
    return this.#evaluator
  }

  /** Starts looking (once); resolves with the PAC, or undefined when none can be used. */
  async start (): Promise<Evaluator | undefined> {
    this.#running ??= this.#discover()
    return await this.#running
  }

  /** Waits for a discovery under way (or starts the explicit one), at most until the signal fires. */
  async ready (options: AbortOptions = {}): Promise<Evaluator | undefined> {
    if (this.#running == null && !this.explicit) return undefined
    const running = this.start()
    if (options.signal == null) return await running
    options.signal.throwIfAborted()
    return await Promise.race([running, new Promise<never>((_resolve, reject) => {
      options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }, { once: true })
    })])
  }

  /** Notes what the PAC named for `url`, for `status` and the doctor. */
  recordAnswer (url: string, answer: string): void {
    const answers = this.#status.answers.filter(a => a.url !== url)
    answers.push({ url, answer: redactCredentials(answer) })
    this.#status.answers = answers.slice(-MAX_ANSWERS)
  }

  /**
   * After a failed dial: when WPAD ran on another network than the one we are
   * on now (new lease, other Wi-Fi, VPN), its outcome is dropped so the next
   * failed direct dial looks again. An operator's PAC is kept. True when reset.
   */
  checkNetwork (): boolean {
    if (this.explicit || this.#network == null || this.#status.state === 'running') return false
    const now = (this.#init.network ?? networkFingerprint)()
    if (now === this.#network) return false
    this.#log.info(`proxy discovery: the network changed since WPAD ran (${this.#status.state}${this.#status.url != null ? `, ${this.#status.url}` : ''}): looking again at the next failed direct dial`, { code: 'PROXY_DISCOVERY_RESET' })
    this.#evaluator?.close()
    this.#evaluator = undefined
    this.#running = undefined
    this.#network = undefined
    this.#status = { state: 'not-needed', looked: [], answers: [] }
    return true
  }

  close (): void {
    this.#closed = true
    this.#evaluator?.close()
    this.#evaluator = undefined
  }

  async #discover (): Promise<Evaluator | undefined> {
    this.#status = { state: 'running', looked: [], answers: [] }
    if (this.#init.explicit == null) this.#network = (this.#init.network ?? networkFingerprint)()
    const explicit = this.#init.explicit
    const found = explicit != null
      ? await this.#tryUrl(explicit.url, explicit.source)
      : await this.#tryDhcp() ?? await this.#tryDns()
    if (this.#closed) {
      found?.close()
      return undefined
    }
    this.#evaluator = found
    this.#report(found)
    return found
  }

  #report (found: Evaluator | undefined): void {
    const s = this.#status
    if (found != null) {
      this.#log.info(`proxy discovery: using the PAC ${s.url} (${s.source}); looked at ${s.looked.join('; ')}`, { code: 'PROXY_PAC_FOUND', source: s.source, url: s.url })
      return
    }
    if (s.state !== 'failed') {
      s.state = 'not-found'
      s.detail = 'no PAC found by DHCP (option 252) or DNS (wpad.<search domain>)'
    }
    this.#log.warn(`proxy discovery: ${s.detail}; looked at ${s.looked.length === 0 ? 'nothing' : s.looked.join('; ')}`, { code: s.state === 'failed' ? 'PROXY_PAC_FAILED' : 'PROXY_PAC_NOT_FOUND', looked: s.looked })
  }

  /** Fetches and compiles one PAC; notes the outcome in `looked`. */
  async #tryUrl (url: string, source: DiscoverySource): Promise<Evaluator | undefined> {
    const shown = redactCredentials(url)
    try {
      const text = await this.#io.fetchText(url, { maxBytes: this.#init.maxPacBytes ?? DEFAULT_MAX_PAC_BYTES, timeoutMs: this.#init.fetchTimeoutMs ?? DEFAULT_PAC_FETCH_TIMEOUT_MS })
      const compile = this.#io.compile ?? (async (script: string, init: PacEvaluatorInit) => await PacEvaluator.create(script, init))
      const evaluator = await compile(text, { ...this.#init.pac, source: shown })
      this.#status.looked.push(`${shown}: a PAC`)
      Object.assign(this.#status, { state: 'found', source, url: shown, detail: undefined })
      return evaluator
    } catch (err) {
      const code = (err as { code?: string }).code
      // fetch says only "fetch failed": the reason (ENOTFOUND, ECONNREFUSED, a timeout) is its cause's
      const cause = (err as { cause?: { code?: string, name?: string } }).cause
      const causeCode = cause?.code ?? (cause?.name === 'TimeoutError' ? 'timeout' : undefined)
      const why = `${code != null ? `${code}: ` : ''}${(err as Error)?.message ?? String(err)}${causeCode != null ? ` (${causeCode})` : ''}`
      this.#status.looked.push(`${shown}: ${why}`)
      // a PAC the operator or DHCP named, or a wpad.dat that does not compile, is a failure, not "nothing found"
      // (a wpad.<domain> that does not resolve or answer is the usual "no WPAD here")
      if (source !== 'wpad-dns' || code === 'PAC_SCRIPT_INVALID') Object.assign(this.#status, { state: 'failed', source, url: shown, detail: `the PAC ${shown} (${source}) cannot be used: ${why}` })
      return undefined
    }
  }

  async #tryDhcp (): Promise<Evaluator | undefined> {
    for (const { dir, match } of this.#init.leaseDirs ?? DEFAULT_LEASE_DIRS) {
      let names: string[]
      try {
        names = (await this.#io.readdir(dir)).filter(n => match.test(n)).sort()
      } catch (err) {
        this.#status.looked.push(`${dir}: ${(err as { code?: string }).code ?? (err as Error).message}`)
        continue
      }
      if (names.length === 0) this.#status.looked.push(`${dir}: no lease file`)
      for (const name of names) {
        const found = await this.#tryLease(join(dir, name))
        if (found != null) return found
      }
    }
    return undefined
  }

  async #tryLease (path: string): Promise<Evaluator | undefined> {
    let url: string | undefined
    try {
      url = wpadFromLease(await this.#io.readFile(path))
    } catch (err) {
      this.#status.looked.push(`${path}: ${(err as { code?: string }).code ?? (err as Error).message}`)
      return undefined
    }
    this.#status.looked.push(`${path}: ${url != null ? `option 252 ${redactCredentials(url)}` : 'no option 252'}`)
    return url != null ? await this.#tryUrl(url, 'wpad-dhcp') : undefined
  }

  async #tryDns (): Promise<Evaluator | undefined> {
    const path = this.#init.resolvConfPath ?? DEFAULT_RESOLV_CONF
    let domains: string[]
    try {
      domains = searchDomains(await this.#io.readFile(path))
    } catch (err) {
      this.#status.looked.push(`${path}: ${(err as { code?: string }).code ?? (err as Error).message}`)
      return undefined
    }
    this.#status.looked.push(`${path}: ${domains.length === 0 ? 'no search domain' : `search ${domains.join(' ')}`}`)
    for (const url of wpadDnsUrls(domains)) {
      const found = await this.#tryUrl(url, 'wpad-dns')
      if (found != null) return found
    }
    return undefined
  }
}

/**
 * The URL `FindProxyForURL` is asked about for one dial: what a browser would
 * fetch. Raw TCP goes through CONNECT like HTTPS, so it is asked as https.
 */
export function pacRouteUrl (use: 'wss' | 'ws' | 'tcp', host: string, port: number): string {
  const h = host.includes(':') ? `[${host}]` : host
  return `${use === 'ws' ? 'http' : 'https'}://${h}:${port}/`
}
