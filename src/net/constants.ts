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

/**
 * The path relays answer with `204 No Content` on their WebSocket listeners
 * (plain and TLS): a donor that gets anything else from a relay address talks
 * to a network's sign-in page (a captive portal), not to the relay. The same
 * path as the probes of Android and Chrome, so a portal that already lets
 * those through treats ours alike.
 */
export const PORTAL_PROBE_PATH = '/generate_204'

/** The header a relay adds to its probe answer, with its PeerId: a portal that fakes 204s cannot name the relay. */
export const PORTAL_PROBE_HEADER = 'x-worldcompute-relay'
