/**
 * The broker's estimate of each executor's free job slots, so it offers a
 * task only where a slot is likely free instead of asking every executor for
 * every waiting job (which, with 200 jobs queued on 4 slots, made 17 declined
 * offers per job and exhausted the offer protocol's stream limits).
 *
 * Sources, newest wins: the executor's capacity announcement (gossip, up to an
 * announce interval old), the `freeSlots` of its last offer answer, and our
 * own bookkeeping (a task of ours that ended there frees one slot). Offers
 * still on the wire count as taken, so parallel jobs do not all aim at the
 * same single free slot. An estimate can be wrong (other brokers use the same
 * executors); a wrong one costs one declined offer, whose answer corrects it.
 */

export interface SlotView {
  peerId: string
  /** free slots in the executor's capacity announcement */
  freeSlots: number
  /** all its slots, when known: caps what releases can add */
  slots?: number
  /** when we heard that announcement (our clock); absent: older than anything we saw ourselves */
  updatedAt?: number
}

interface Entry { free: number, at: number }
interface Trouble { failures: number, until: number }

/** After an offer that could not reach the executor, no offer goes there for this long, doubling per failure in a row. */
export const UNREACHABLE_BACKOFF_MS = { first: 2_000, max: 60_000 }

export class SlotLedger {
  private readonly entries = new Map<string, Entry>()
  private readonly pending = new Map<string, number>()
  /** executors whose last offers failed to reach them (no address, dial failed, stream reset) */
  private readonly trouble = new Map<string, Trouble>()
  private readonly now: () => number

  constructor (now: () => number = Date.now) {
    this.now = now
  }

  /** Free slots we expect the executor to have now, offers in flight deducted; 0 while it is unreachable. */
  free (view: SlotView): number {
    if (this.coolingDown(view.peerId)) return 0
    return Math.max(0, this.base(view) - (this.pending.get(view.peerId) ?? 0))
  }

  /** True while offers to this executor are paused after failing to reach it. */
  coolingDown (peerId: string): boolean {
    const t = this.trouble.get(peerId)
    return t != null && this.now() < t.until
  }

  /** True when the last offer to this executor reached it (or none was made): it is worth waiting for. */
  reachable (peerId: string): boolean {
    return !this.trouble.has(peerId)
  }

  /** An offer to this executor is being sent: its slot counts as taken until the answer. */
  offering (peerId: string): void {
    this.pending.set(peerId, (this.pending.get(peerId) ?? 0) + 1)
  }

  /**
   * The offer's answer came back, or the offer failed (`accepted` undefined:
   * the executor could not be reached, so offers to it pause, with backoff).
   * `freeSlots` is what the executor said it has left after answering.
   */
  answered (view: SlotView, accepted: boolean | undefined, freeSlots?: number): void {
    const before = this.base(view)
    const n = (this.pending.get(view.peerId) ?? 1) - 1
    if (n <= 0) this.pending.delete(view.peerId)
    else this.pending.set(view.peerId, n)
    if (accepted === undefined) {
      this.unreachable(view.peerId)
      return
    }
    this.trouble.delete(view.peerId)
    let free: number
    if (freeSlots != null && Number.isFinite(freeSlots)) free = freeSlots
    else free = accepted ? Math.max(0, before - 1) : 0
    this.entries.set(view.peerId, { free, at: this.now() })
  }

  /**
   * The executor could not be reached: offers to it pause, with backoff.
   * Shared by every job: one job learning that an executor cannot be reached
   * spares the others the same failed dial. `firstPauseMs`: the first pause
   * (doubling from there) when finding that out took long — no shorter than
   * the wait itself, or the next job would wait as long again for the same
   * answer.
   */
  unreachable (peerId: string, firstPauseMs: number = UNREACHABLE_BACKOFF_MS.first): void {
    const failures = (this.trouble.get(peerId)?.failures ?? 0) + 1
    const pause = Math.min(UNREACHABLE_BACKOFF_MS.max, Math.max(firstPauseMs, UNREACHABLE_BACKOFF_MS.first) * 2 ** (failures - 1))
    this.trouble.set(peerId, { failures, until: this.now() + pause })
  }

  /**
   * A task whose offer rode its dispatch was declined: the slot it was
   * expected to take was not taken, and the executor has `freeSlots` left
   * (none when it did not say: it declined, so expect it busy).
   */
  declined (view: SlotView, freeSlots?: number): void {
    this.entries.set(view.peerId, { free: freeSlots != null && Number.isFinite(freeSlots) ? freeSlots : 0, at: this.now() })
  }

  /** A task of ours on this executor ended: its slot is free again. */
  released (view: SlotView): void {
    const cap = view.slots ?? Number.POSITIVE_INFINITY
    this.entries.set(view.peerId, { free: Math.min(cap, this.base(view) + 1), at: this.now() })
  }

  /** Forget executors no longer in the mesh, so the map does not grow without bound. */
  retain (peerIds: ReadonlySet<string>): void {
    for (const id of this.entries.keys()) if (!peerIds.has(id)) this.entries.delete(id)
    for (const id of this.trouble.keys()) if (!peerIds.has(id)) this.trouble.delete(id)
  }

  private base (view: SlotView): number {
    const own = this.entries.get(view.peerId)
    const heard = view.updatedAt ?? Number.NEGATIVE_INFINITY
    if (own == null || heard > own.at) return view.freeSlots
    return own.free
  }
}
