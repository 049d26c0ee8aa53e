/**
 * The slices of libp2p's components the protocols use, declared here
 * structurally: the full interfaces live in `@libp2p/interface-internal`,
 * which is not one of our dependencies, and a narrow type also keeps each
 * service honest about what it touches. libp2p's own components object
 * satisfies them.
 */
import type { AbortOptions, Connection, NewStreamOptions, PeerId, Stream, StreamHandler, StreamHandlerOptions, Topology } from '@libp2p/interface'

export interface ProtocolRegistrar {
  handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
  unhandle: (protocol: string, options?: AbortOptions) => Promise<void>
  register: (protocol: string, topology: Topology, options?: AbortOptions) => Promise<string>
  unregister: (id: string) => void
}

export interface StreamOpener {
  openStream: (peer: PeerId, protocol: string, options?: NewStreamOptions) => Promise<Stream>
}

/** Where a request goes: an open connection (used as is, e.g. a relayed one) or a PeerId (libp2p picks or dials). */
export type ProtocolTarget = Connection | PeerId

export function isConnection (target: ProtocolTarget): target is Connection {
  return typeof (target as Connection).newStream === 'function'
}

export function peerOf (target: ProtocolTarget): PeerId {
  return isConnection(target) ? target.remotePeer : target
}

/**
 * Opens a stream for `protocol`, by default allowed on limited (relayed)
 * connections: without `runOnLimitedConnection` libp2p refuses to open it
 * over a circuit, and donors behind NAT are reached only through relays.
 * A PeerId target needs `connectionManager` (libp2p picks or dials the connection).
 */
export async function openProtocolStream (target: ProtocolTarget, protocol: string, connectionManager: StreamOpener | undefined, options: AbortOptions & { runOnLimitedConnection?: boolean }): Promise<Stream> {
  const opts: NewStreamOptions = { signal: options.signal, runOnLimitedConnection: options.runOnLimitedConnection ?? true }
  if (isConnection(target)) {
    return await target.newStream(protocol, opts)
  }
  if (connectionManager == null) throw new TypeError(`${protocol}: a stream to a bare PeerId needs the connection manager; pass a connection`)
  return await connectionManager.openStream(target, protocol, opts)
}
