/**
 * The slice of @libp2p/gossipsub's instance this file relies on; checked at
 * run time, since `status` is not part of its public interface.
 */
interface GossipsubLike {
  status?: { code?: unknown, heartbeatTimeout?: ReturnType<typeof setTimeout> }
  stop: () => Promise<void>
}

/**
 * @libp2p/gossipsub 17's `stop()` cancels a `heartbeatTimer` field it no longer
 * arms and leaves the timer it does arm (`status.heartbeatTimeout`, one
 * heartbeat interval: 10 s on a daemon) pending, then drops its only
 * reference to it. A stopped node's heartbeat thus fires once more, on a
 * node with no peers, and holds the process open until it does: a daemon's
 * exit, and every test file with a node, ran up to 10 s past its end. This
 * clears that timer as `stop()` begins; `stop()` marks the instance stopped
 * in the same synchronous step, so no heartbeat can arm another after it.
 * Exported for its unit test.
 */
export function clearHeartbeatOnStop (pubsub: unknown): void {
  const gossip = pubsub as GossipsubLike | undefined
  if (gossip == null || typeof gossip.stop !== 'function' || gossip.status == null || typeof gossip.status !== 'object') return
  const stop = gossip.stop.bind(gossip)
  gossip.stop = async () => {
    const timer = gossip.status?.heartbeatTimeout
    if (timer != null) clearTimeout(timer)
    await stop()
  }
}
