import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'

/**
 * A peer's address text as a Multiaddr, or undefined where this version
 * cannot parse it (a newer peer's transport, or garbage). What a peer
 * announces or sends is a hint: an address we cannot parse is not one we can
 * dial either, so callers skip it rather than fail on it.
 */
export function parseAddr (addr: string): Multiaddr | undefined {
  try {
    return multiaddr(addr)
  } catch {
    // not an error of ours: the callers' documented "skip what does not parse"
    return undefined
  }
}
