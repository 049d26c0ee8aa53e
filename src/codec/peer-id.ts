import { peerIdFromString } from '@libp2p/peer-id'
import { remember } from '../core/recent.ts'
import type { PeerId } from '@libp2p/interface'

/**
 * The PeerId a text names, taken from the ones parsed lately when it is one of
 * them: the same few peers are named in every message (a receipt's executor,
 * the broker a donor answers, the executor a dispatch reaches), and a PeerId
 * object is never changed once made, so one can be shared. A text that is not
 * a PeerId throws what `peerIdFromString` throws, and is not remembered.
 */
export function parsePeerIdText (text: string): PeerId {
  const known = parsedPeerIds.get(text)
  if (known != null) return known
  const peerId = peerIdFromString(text)
  remember(parsedPeerIds, text, peerId, PARSED_PEER_IDS)
  return peerId
}

/** PeerIds parsed lately, by their text, oldest first */
const parsedPeerIds = new Map<string, PeerId>()
const PARSED_PEER_IDS = 1024
