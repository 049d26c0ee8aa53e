import { VERSION } from '../core/version.ts'

/** Protocol and topic names of the mesh, versioned: bump the version, never change a name in place. */

/** gossip topic on which relays and donors announce themselves (used by the traversal issue for relay discovery) */
export const MESH_TOPIC = '/worldcompute/mesh/1.0.0'

/** time budget for one dial attempt to one address */
export const DEFAULT_DIAL_ATTEMPT_TIMEOUT_MS = 5_000

/** time budget for a relay to grant a reservation on an open connection */
export const DEFAULT_RESERVATION_TIMEOUT_MS = 5_000

export const AGENT_VERSION = `worldcompute/${VERSION}`

/**
 * Path prefix of the HTTPS long-polling transport on a relay's WebSocket
 * listeners (src/net/https-poll): versioned like the protocol names, a new
 * wire format gets a new prefix beside the old one.
 */
export const HTTPS_POLL_PATH = '/wc-poll/1'
