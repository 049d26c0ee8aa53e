import type { Gossip, GossipMessage, GossipVerdict } from './components.ts'

/** gossipsub as this file uses it (`@libp2p/gossipsub` 14). */
export interface GossipSubLike {
  subscribe: (topic: string) => void
  unsubscribe: (topic: string) => void
  publish: (topic: string, data: Uint8Array) => Promise<unknown>
  topicValidators: Map<string, (peer: unknown, msg: GossipMessage) => GossipVerdict>
  addEventListener: (type: string, listener: (evt: CustomEvent<any>) => void) => void
  removeEventListener: (type: string, listener: (evt: CustomEvent<any>) => void) => void
}

/** The mesh gossip over gossipsub; its TopicValidatorResult values are the strings of {@link GossipVerdict}. */
export class GossipSub implements Gossip {
  private readonly pubsub: GossipSubLike

  constructor (pubsub: GossipSubLike) {
    this.pubsub = pubsub
  }

  subscribe (topic: string): void {
    this.pubsub.subscribe(topic)
  }

  unsubscribe (topic: string): void {
    this.pubsub.unsubscribe(topic)
  }

  async publish (topic: string, data: Uint8Array): Promise<void> {
    await this.pubsub.publish(topic, data)
  }

  validate (topic: string, validator: (msg: GossipMessage) => GossipVerdict): void {
    this.pubsub.topicValidators.set(topic, (_peer, msg) => validator(msg))
  }

  onMessage (listener: (msg: GossipMessage) => void): () => void {
    const handler = (evt: CustomEvent<GossipMessage>): void => { listener(evt.detail) }
    this.pubsub.addEventListener('message', handler)
    return () => { this.pubsub.removeEventListener('message', handler) }
  }

  onSubscriptionChange (listener: (subscriptions: Array<{ topic: string, subscribe: boolean }>) => void): () => void {
    const handler = (evt: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => { listener(evt.detail.subscriptions) }
    this.pubsub.addEventListener('subscription-change', handler)
    return () => { this.pubsub.removeEventListener('subscription-change', handler) }
  }
}
