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

export class SlotLedger {
  private readonly entries = new Map<string, Entry>()
  private readonly pending = new Map<string, number>()
  private readonly now: () => number

  constructor (now: () => number = Date.now) {
    this.now = now
  }

  /** Free slots we expect the executor to have now, offers in flight deducted. */
  free (view: SlotView): number {
    return Math.max(0, this.base(view) - (this.pending.get(view.peerId) ?? 0))
  }

  /** An offer to this executor is being sent: its slot counts as taken until the answer. */
  offering (peerId: string): void {
    this.pending.set(peerId, (this.pending.get(peerId) ?? 0) + 1)
  }

  /**
   * The offer's answer came back (or the offer failed: `accepted` undefined).
   * `freeSlots` is what the executor said it has left after answering.
   */
  answered (view: SlotView, accepted: boolean | undefined, freeSlots?: number): void {
    const before = this.base(view)
    const n = (this.pending.get(view.peerId) ?? 1) - 1
    if (n <= 0) this.pending.delete(view.peerId)
    else this.pending.set(view.peerId, n)
    if (accepted === undefined) return
    let free: number
    if (freeSlots != null && Number.isFinite(freeSlots)) free = freeSlots
    else free = accepted ? Math.max(0, before - 1) : 0
    this.entries.set(view.peerId, { free, at: this.now() })
  }

  /** A task of ours on this executor ended: its slot is free again. */
  released (view: SlotView): void {
    const cap = view.slots ?? Number.POSITIVE_INFINITY
    this.entries.set(view.peerId, { free: Math.min(cap, this.base(view) + 1), at: this.now() })
  }

  /** Forget executors no longer in the mesh, so the map does not grow without bound. */
  retain (peerIds: ReadonlySet<string>): void {
    for (const id of this.entries.keys()) if (!peerIds.has(id)) this.entries.delete(id)
  }

  private base (view: SlotView): number {
    const own = this.entries.get(view.peerId)
    const heard = view.updatedAt ?? Number.NEGATIVE_INFINITY
    if (own == null || heard > own.at) return view.freeSlots
    return own.free
  }
}
