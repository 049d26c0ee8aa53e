import type { Logger } from '../log/logger.ts'
import type { Libp2p } from 'libp2p'

/**
 * What the components of src/net share about the node: the libp2p node and
 * its internal components (transport manager, address manager), which no
 * role ever sees. Private to src/net.
 */
export interface NodeCore {
  libp2p: Libp2p<any>
  /** libp2p's internal components, reached through the `internals` service */
  internals: Record<string, any>
  log: Logger
}
