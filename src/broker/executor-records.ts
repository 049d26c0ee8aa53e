/**
 * What this broker has seen each executor do, for ranking executors by
 * observation rather than by the free slots they claim (a claim costs
 * nothing: an identity announcing 65,535 free slots would otherwise be asked
 * first for every job), and the network each was last observed in.
 *
 * Reliability is a smoothed ratio of good to bad outcomes: an executor never
 * seen ranks below one with a record of agreeing results and above one that
 * failed; an invalid receipt or a lost vote weighs as much as
 * {@link BAD_WEIGHT} failures, so a single one puts a peer behind every
 * executor without such a mark.
 */

/** How much worse than a failure an invalid receipt or a lost vote counts. */
export const BAD_WEIGHT = 10

/** Records kept at most; the least recently touched go first. */
export const MAX_RECORDS = 10_000

/** How long an observed network is reused before the executor is located again. */
export const NETWORK_TTL_MS = 60_000

interface Record {
  /** offers it answered (accept or decline) */
  answers: number
  /** offers that never reached it */
  silences: number
  /** tasks that came back with a verified result */
  results: number
  /** tasks that failed for reasons that may be honest (crash, broken path) */
  failures: number
  /** results in the majority of their job */
  agreements: number
  /** results outside the majority of their job */
  lostVotes: number
  /** answers that prove misbehaviour: an invalid receipt, a malformed result */
  invalid: number
  /** offer round trip, smoothed, ms */
  latencyMs?: number
  network?: { key: string, at: number }
}

/** What a ranking looks at, for logs and tests. */
export interface ExecutorStanding {
  /** 0–1: 0.5 for an executor never seen */
  reliability: number
  latencyMs?: number
  agreements: number
  lostVotes: number
  invalid: number
}

export class ExecutorRecords {
  private readonly records = new Map<string, Record>()
  private readonly now: () => number

  constructor (now: () => number = Date.now) {
    this.now = now
  }

  /** An offer came back (accept or decline) after `ms`. */
  answered (peerId: string, ms: number): void {
    const r = this.touch(peerId)
    r.answers++
    r.latencyMs = r.latencyMs == null ? ms : r.latencyMs * 0.8 + ms * 0.2
  }

  /** An offer never reached it. */
  silent (peerId: string): void {
    this.touch(peerId).silences++
  }

  /** A task came back with a verified result. */
  resulted (peerId: string): void {
    this.touch(peerId).results++
  }

  /** A task failed: `misbehaved` when the answer proves it (an invalid receipt), else a failure that may be honest. */
  failed (peerId: string, misbehaved: boolean): void {
    const r = this.touch(peerId)
    if (misbehaved) r.invalid++
    else r.failures++
  }

  /** Its result was in its job's majority (`true`) or outside it. */
  voted (peerId: string, agreed: boolean): void {
    const r = this.touch(peerId)
    if (agreed) r.agreements++
    else r.lostVotes++
  }

  /** Where it was last observed (a network key of replica-networks.ts). */
  located (peerId: string, network: string): void {
    this.touch(peerId).network = { key: network, at: this.now() }
  }

  /** Its observed network while still fresh, else undefined (locate it again). */
  network (peerId: string): string | undefined {
    const n = this.records.get(peerId)?.network
    return n != null && this.now() - n.at < NETWORK_TTL_MS ? n.key : undefined
  }

  standing (peerId: string): ExecutorStanding {
    const r = this.records.get(peerId)
    if (r == null) return { reliability: 0.5, agreements: 0, lostVotes: 0, invalid: 0 }
    const good = r.results + r.agreements + r.answers * 0.1
    const bad = r.failures + r.silences * 0.5 + BAD_WEIGHT * (r.lostVotes + r.invalid)
    return { reliability: (good + 1) / (good + bad + 2), latencyMs: r.latencyMs, agreements: r.agreements, lostVotes: r.lostVotes, invalid: r.invalid }
  }

  /**
   * Orders two executors, better first: reliability in steps of a tenth
   * (small differences are noise), then the faster answer; 0 when this
   * record cannot tell them apart (the caller breaks the tie).
   */
  compare (a: string, b: string): number {
    const sa = this.standing(a)
    const sb = this.standing(b)
    const byReliability = Math.round(sb.reliability * 10) - Math.round(sa.reliability * 10)
    if (byReliability !== 0) return byReliability
    if (sa.latencyMs == null || sb.latencyMs == null) return 0
    // only a clear difference in round trip counts: 50 ms and 60 ms are the same path
    const diff = sa.latencyMs - sb.latencyMs
    return Math.abs(diff) < Math.max(20, 0.25 * Math.min(sa.latencyMs, sb.latencyMs)) ? 0 : diff
  }

  private touch (peerId: string): Record {
    let r = this.records.get(peerId)
    if (r != null) this.records.delete(peerId)
    r ??= { answers: 0, silences: 0, results: 0, failures: 0, agreements: 0, lostVotes: 0, invalid: 0 }
    // re-inserted last: the map's order is the order of last use
    this.records.set(peerId, r)
    if (this.records.size > MAX_RECORDS) {
      const oldest = this.records.keys().next().value
      if (oldest != null) this.records.delete(oldest)
    }
    return r
  }
}
