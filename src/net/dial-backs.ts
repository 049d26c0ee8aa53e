import type { DialRecorder, ProgressHandler } from './dial-recorder.ts'

/** The slice of @libp2p/autonat-v2's service this file relies on; checked at run time (`server` is not public). */
interface AutoNatServerLike {
  dialClientBack: (ma: unknown, nonce: unknown, options?: { onProgress?: ProgressHandler, [key: string]: unknown }) => Promise<unknown>
}

/**
 * Marks the dials this node's AutoNAT v2 server makes for other peers (a
 * peer asks "can you reach me at this address?", the server dials it) as
 * purpose `dial-back`, so that the dial log can tell them from dials this
 * node needs. A dial-back that fails is the check's answer ("not reachable
 * there"), which goes to the peer that asked: nothing is wrong here. Without
 * the mark each one was a WARN "dial failed … purpose=internal" in the
 * relay's log, two per QUIC donor that connects (its QUIC dials leave from a
 * port it does not listen on, and that observed address is checked too).
 */
export function tagDialBacks (autoNAT: unknown, recorder: Pick<DialRecorder, 'track'>): void {
  const server = (autoNAT as { server?: unknown } | undefined)?.server as AutoNatServerLike | undefined
  if (server == null || typeof server.dialClientBack !== 'function') return
  const dialClientBack = server.dialClientBack.bind(server)
  server.dialClientBack = async (ma, nonce, options = {}) => {
    const outer = options.onProgress
    const { onProgress } = recorder.track('dial-back', (evt) => { outer?.(evt) })
    return await dialClientBack(ma, nonce, { ...options, onProgress })
  }
}
