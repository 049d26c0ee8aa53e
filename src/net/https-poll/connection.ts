import { AbstractMultiaddrConnection, type AbstractMultiaddrConnectionInit } from '@libp2p/utils'
import type { AbortOptions } from '@libp2p/interface'
import type { SendResult } from '@libp2p/utils'

/** the byte list the base class hands to sendData (its own uint8arraylist version) */
type SendList = Parameters<AbstractMultiaddrConnection['sendData']>[0]

/** What a poll connection tells the libp2p side: bytes in order, room to write again, the end. */
export interface PollSink {
  data: (bytes: Uint8Array) => void
  /** the send buffer fell below its limit after a write said it was full */
  drain: () => void
  /** the other end closed cleanly, or the session expired (with a reason) */
  closed: (err?: Error) => void
  /** the other end reset the connection */
  reset: () => void
}

/**
 * One end of a poll session (client or server), seen as a byte pipe. `write`
 * queues bytes for the other end and says whether the queue has room for
 * more; `close` sends what is queued, then ends the session.
 */
export interface PollEnd {
  attach: (sink: PollSink) => void
  write: (bytes: Uint8Array) => boolean
  close: (options?: AbortOptions) => Promise<void>
  reset: (err: Error) => void
}

export interface PollConnectionInit extends AbstractMultiaddrConnectionInit {
  end: PollEnd
}

/**
 * A libp2p MultiaddrConnection over a poll session: the upgrader runs Noise
 * and yamux on it as on any socket. Backpressure is the session's send
 * buffer: a write past its limit says "no more" and the session's `drain`
 * resumes the libp2p side.
 */
export class PollConnection extends AbstractMultiaddrConnection {
  readonly #end: PollEnd

  constructor (init: PollConnectionInit) {
    super(init)
    this.#end = init.end
    this.#end.attach({
      data: (bytes) => { this.onData(bytes) },
      drain: () => { this.safeDispatchEvent('drain') },
      closed: (err) => { this.onTransportClosed(err) },
      reset: () => { this.onRemoteReset() }
    })
  }

  sendData (data: SendList): SendResult {
    const canSendMore = this.#end.write(data.subarray())
    return { sentBytes: data.byteLength, canSendMore }
  }

  sendReset (err: Error): void {
    this.#end.reset(err)
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    await this.#end.close(options)
  }

  sendPause (): void {
    // the poll transport has no read backpressure: the client's poll loop asks for bytes as it reads them
  }

  sendResume (): void {
    // see sendPause
  }
}
