import { cleanup } from 'node-datachannel'
import type { Logger } from '../log/logger.ts'

/**
 * node-datachannel (under @libp2p/webrtc) runs native threads that keep the
 * Node process alive until its `cleanup()` is called, and a WebRTC peer
 * connection whose remote side went away first is not always released when
 * libp2p stops (measured: the process never exited after the dialling node
 * stopped before the listening one). @libp2p/webrtc no longer calls
 * `cleanup()` on stop because it closes every connection of every node in
 * the process (js-libp2p PR 2498), so we call it when the last node in this
 * process that uses WebRTC has stopped.
 */
let users = 0

export function acquireWebRtc (): void {
  users++
}

export function releaseWebRtc (log: Logger): void {
  if (users === 0) return
  users--
  if (users > 0) return
  try {
    cleanup()
  } catch (err) {
    log.warn(`WebRTC: releasing node-datachannel's native threads failed (the process may not exit by itself): ${(err as Error).message}`, { transport: 'webrtc' })
  }
}
