import type { Listener, ListenerEvents } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { pollAddrFor, pollTargetOf } from './address.ts'

export interface PollListenerInit {
  /** puts the poll route on the WebSocket listeners' table (shared by every poll listener) */
  register: () => void
  unregister: () => void
  /** the addresses the node's WebSocket listeners are bound to now */
  wsAddrs: () => Multiaddr[]
}

/**
 * A listener that binds no socket: the relay's WebSocket listeners carry the
 * requests. Its addresses are those of the WebSocket listeners of the same
 * kind (TLS or not, and the same port unless it listened on port 0), with
 * `/ws` swapped for the poll route, so they follow the ports actually bound.
 */
export class PollListener extends TypedEventEmitter<ListenerEvents> implements Listener {
  readonly #init: PollListenerInit
  #listening?: { tls: boolean, port: number }

  constructor (init: PollListenerInit) {
    super()
    this.#init = init
  }

  async listen (ma: Multiaddr): Promise<void> {
    const target = pollTargetOf(ma)
    if (target == null) throw new Error(`not an HTTPS poll address: ${ma.toString()}`)
    this.#init.register()
    this.#listening = { tls: target.tls, port: target.port }
    this.safeDispatchEvent('listening')
  }

  getAddrs (): Multiaddr[] {
    const mine = this.#listening
    if (mine == null) return []
    return this.#init.wsAddrs()
      .filter(a => a.toString().includes('/tls/') === mine.tls && (mine.port === 0 || a.toString().includes(`/tcp/${mine.port}/`)))
      .map(a => pollAddrFor(a))
      .filter((a): a is Multiaddr => a != null)
  }

  updateAnnounceAddrs (): void {
    // poll addresses are derived from the WebSocket ones, which carry no runtime metadata
  }

  async close (): Promise<void> {
    if (this.#listening == null) return
    this.#listening = undefined
    this.#init.unregister()
    this.safeDispatchEvent('close')
  }
}
