/**
 * Members of a relay's per-IP accounting (connections by id, reservations by
 * peer) grouped by the IP key they count against, kept up to date member by
 * member so that a limit check reads one group instead of scanning every
 * connection or reservation of the relay: admission stays O(1) per new
 * connection however many are held.
 */
export class IpIndex {
  /** IP key → member id → the peer it belongs to */
  private readonly groups = new Map<string, Map<string, string>>()
  /** member id → its IP key */
  private readonly keys = new Map<string, string>()

  /** Adds `id` under `key`, moving it when it was under another key. */
  add (id: string, key: string, peer: string): void {
    if (this.keys.get(id) !== key) this.remove(id)
    let group = this.groups.get(key)
    if (group == null) {
      group = new Map()
      this.groups.set(key, group)
    }
    group.set(id, peer)
    this.keys.set(id, key)
  }

  remove (id: string): void {
    const key = this.keys.get(id)
    if (key == null) return
    this.keys.delete(id)
    const group = this.groups.get(key)
    group?.delete(id)
    if (group?.size === 0) this.groups.delete(key)
  }

  has (id: string): boolean {
    return this.keys.has(id)
  }

  /** members under `key` */
  count (key: string): number {
    return this.groups.get(key)?.size ?? 0
  }

  /** the distinct peers of the members under `key` */
  peers (key: string): Set<string> {
    return new Set(this.groups.get(key)?.values())
  }

  clear (): void {
    this.groups.clear()
    this.keys.clear()
  }

  get size (): number {
    return this.keys.size
  }
}
