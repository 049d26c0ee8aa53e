import type { NodeAddresses } from './components.ts'
import type { NodeCore } from './node-core.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

export class NodeAddressBook implements NodeAddresses {
  private readonly core: NodeCore

  constructor (core: NodeCore) {
    this.core = core
  }

  confirmListenAddrs (): void {
    const am = this.core.internals.addressManager
    for (const entry of am.getAddressesWithMetadata() as Array<{ multiaddr: Multiaddr, verified: boolean, type: string }>) {
      if (!entry.verified && entry.type === 'transport') {
        am.confirmObservedAddr(entry.multiaddr, { type: 'transport' })
      }
    }
  }

  listenAddrs (): string[] {
    const peerId = this.core.libp2p.peerId.toString()
    const bound = (this.core.internals.transportManager.getAddrs() as Multiaddr[]).map(ma => ma.toString())
    return dedupe([...this.advertisedAddrs(), ...bound.map(a => a.includes('/p2p/') ? a : `${a}/p2p/${peerId}`)])
  }

  boundAddrs (): string[] {
    return (this.core.internals.transportManager.getAddrs() as Multiaddr[]).map(ma => ma.toString())
  }

  advertisedAddrs (): string[] {
    return dedupe(this.core.libp2p.getMultiaddrs().map(ma => ma.toString()))
  }
}

function dedupe (list: string[]): string[] {
  return [...new Set(list)]
}
