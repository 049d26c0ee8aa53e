import { backoffDelay, Waker, type BackoffPolicy } from '../core/async.ts'
import { errorWithCode } from '../core/errors.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { probeCaptivePortal } from '../net/captive-portal.ts'
import type { CaptivePortalProbe, CaptivePortalStatus } from '../core/types.ts'
import type { AbortOptions } from '@libp2p/interface'

/** The probe itself failed (not "nothing answered", which is a result): a bug or a resource limit. */
export class CaptivePortalProbeError extends errorWithCode('CAPTIVE_PORTAL_PROBE_FAILED') {}

/** How often a network that shows a sign-in page is asked again: 10 s, doubling to once a minute. */
export const DEFAULT_PORTAL_RECHECK: BackoffPolicy = { initialMs: 10_000, maxMs: 60_000 }

/** The least time between two probes asked for by relays that keep failing. */
export const DEFAULT_PORTAL_SUSPECT_INTERVAL_MS = 30_000

/**
 * The first probe waits this long after start: on a network that lets the
 * donor out, the first relay dial (whose rungs are staggered by a few hundred
 * ms) is not made to share the relay's port with a probe.
 */
export const DEFAULT_PORTAL_START_DELAY_MS = 1_000

/** Waker.wait needs a bound: this one is never reached in practice (24.8 days, setTimeout's largest). */
const NO_TIMER_MS = 2_147_483_647

export interface CaptivePortalWatchInit {
  /** the relays' probe URLs (portalProbeUrls of the bootstrap list) */
  urls: readonly string[]
  /** the PeerId of the relay a probe URL belongs to, for the WARN @default none named */
  relayOf?: (url: string) => string | undefined
  /** the portal let this device out: the relays should be tried now, not after their back-off */
  onLetOut: () => void
  /** @default probeCaptivePortal (src/net/captive-portal.ts) */
  probe?: (urls: readonly string[], options: AbortOptions) => Promise<CaptivePortalProbe>
  /** while a portal is seen, the probe runs again after these waits @default DEFAULT_PORTAL_RECHECK */
  recheck?: BackoffPolicy
  /** relays failing ask for a probe at most this often @default DEFAULT_PORTAL_SUSPECT_INTERVAL_MS */
  suspectIntervalMs?: number
  /** the first probe after start @default DEFAULT_PORTAL_START_DELAY_MS */
  startDelayMs?: number
  logger?: Logger
}

/**
 * Whether the donor stands behind a captive portal, and when it stops doing
 * so. It probes once shortly after start, and again when every relay dial fails
 * ({@link suspect}); no timer runs otherwise. While a portal is seen it
 * probes again with a back-off (10 s → 60 s) until a relay answers, then
 * tells the reservation manager to try at once (`onLetOut`): a person who
 * signs in expects the donor to join within seconds, not after the relays'
 * back-off.
 */
export class CaptivePortalWatch {
  private readonly init: CaptivePortalWatchInit
  private readonly log: Logger
  private readonly probe: NonNullable<CaptivePortalWatchInit['probe']>
  private readonly recheck: BackoffPolicy
  private readonly suspectIntervalMs: number
  /** latched: a suspicion raised while a probe runs is not lost */
  private readonly waker = new Waker({ latch: true })
  private current: CaptivePortalStatus = { state: 'unknown' }
  private suspected = true
  private lastProbeAt = -Infinity
  private firstProbeAt = 0
  /** probes in a row that saw the portal, and when the next is due */
  private rechecks = 0
  private recheckAt = 0
  private controller?: AbortController
  private loop?: Promise<void>

  constructor (init: CaptivePortalWatchInit) {
    this.init = init
    this.log = init.logger ?? createLogger('donor.portal')
    this.probe = init.probe ?? probeCaptivePortal
    this.recheck = init.recheck ?? DEFAULT_PORTAL_RECHECK
    this.suspectIntervalMs = init.suspectIntervalMs ?? DEFAULT_PORTAL_SUSPECT_INTERVAL_MS
  }

  start (): void {
    if (this.controller != null || this.init.urls.length === 0) return
    const controller = new AbortController()
    this.controller = controller
    this.firstProbeAt = Date.now() + (this.init.startDelayMs ?? DEFAULT_PORTAL_START_DELAY_MS)
    this.loop = this.run(controller.signal).catch((err: unknown) => {
      if (!controller.signal.aborted) this.log.error(`captive portal watch stopped unexpectedly: ${(err as Error).stack ?? String(err)}`)
    })
  }

  async stop (): Promise<void> {
    this.controller?.abort()
    await this.loop
    this.controller = undefined
    this.loop = undefined
  }

  /** Every relay dial failed: a portal may be in the way. */
  suspect (): void {
    this.suspected = true
    this.waker.wake()
  }

  /**
   * A relay connection opened: while a portal is seen, ask again now rather
   * than at the next re-check, so status stops saying "portal" as soon as it
   * is gone (signing in often lets the relays through before the re-check).
   */
  relayReached (): void {
    if (this.current.state !== 'yes') return
    this.recheckAt = 0
    this.waker.wake()
  }

  status (): CaptivePortalStatus {
    return { ...this.current }
  }

  private async run (signal: AbortSignal): Promise<void> {
    for (;;) {
      const due = this.dueIn(Date.now())
      if (due <= 0) await this.check(signal)
      else await this.waker.wait(Math.min(due, NO_TIMER_MS), { signal })
    }
  }

  /** ms until the next probe: 0 now; Infinity: none until a suspicion */
  private dueIn (now: number): number {
    if (this.current.state === 'yes') return this.recheckAt - now
    if (this.suspected) return Math.max(this.lastProbeAt + this.suspectIntervalMs, this.firstProbeAt) - now
    return Infinity
  }

  private async check (signal: AbortSignal): Promise<void> {
    this.suspected = false
    this.lastProbeAt = Date.now()
    let result: CaptivePortalProbe
    try {
      result = await this.probe(this.init.urls, { signal })
    } catch (err) {
      signal.throwIfAborted()
      const failure = new CaptivePortalProbeError(`the captive portal probe failed: ${(err as Error).message}`, { cause: err })
      this.log.warn(failure.message, { code: failure.code, phase: 'captive-portal', cause: (err as Error).message })
      result = { state: 'unknown', answers: [], detail: failure.message, checkedAt: new Date().toISOString() }
    }
    signal.throwIfAborted()
    this.observe(result)
  }

  private observe (result: CaptivePortalProbe): void {
    const was = this.current
    const checkedAt = result.checkedAt
    if (result.state === 'yes') {
      const url = result.url ?? result.answers[0]?.url ?? '?'
      if (was.state !== 'yes') this.portalSeen(result, url)
      this.rechecks++
      this.recheckAt = Date.now() + backoffDelay(this.recheck, this.rechecks)
      this.current = { state: 'yes', url, since: was.state === 'yes' ? was.since : checkedAt, checkedAt }
      return
    }
    if (was.state === 'yes' && result.state === 'unknown') {
      // silence says nothing about the portal: it is still assumed there, and asked again
      this.rechecks++
      this.recheckAt = Date.now() + backoffDelay(this.recheck, this.rechecks)
      this.current = { ...was, checkedAt }
      this.log.debug(`captive portal check: nothing answered (${result.detail}); asking again in ${Math.round((this.recheckAt - Date.now()) / 1000)} s`)
      return
    }
    this.rechecks = 0
    this.current = { state: result.state, checkedAt }
    if (was.state === 'yes') {
      this.log.info(`the captive portal lets this device out now (${result.detail}): trying the relays at once`, { code: 'CAPTIVE_PORTAL_GONE' })
      this.init.onLetOut()
    }
  }

  private portalSeen (result: CaptivePortalProbe, url: string): void {
    const answer = result.answers.find(a => a.outcome === 'portal')
    const peer = answer != null ? this.init.relayOf?.(answer.url) : undefined
    const asked = answer == null ? 'the relays' : `${answer.url}${peer != null ? ` (relay ${peer})` : ''}`
    this.log.warn(`this network shows a sign-in page (captive portal) at ${url}: open it in a browser and sign in; the donor joins by itself afterwards (asked ${asked}: ${answer?.detail ?? result.detail})`, {
      code: 'CAPTIVE_PORTAL',
      url,
      ...(peer != null ? { peer } : {}),
      addr: answer?.url,
      transport: answer?.url.startsWith('https:') === true ? 'https' : 'http',
      phase: 'captive-portal',
      cause: answer?.detail ?? result.detail
    })
  }
}
