import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { decodeRelayAnnouncement, encodeRelayAnnouncement, InvalidRelayAnnouncementError } from '../../src/net/relay-announcement.ts'

const relay = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()

describe('relay announcements', () => {
  it('round-trips and names each address with the relay PeerId', () => {
    const bytes = encodeRelayAnnouncement({ peerId: relay, addrs: ['/ip4/198.51.100.10/tcp/4001', `/ip4/198.51.100.10/udp/4001/quic-v1/p2p/${relay}`], ts: 1_700_000_000_000 })
    const a = decodeRelayAnnouncement(bytes, relay)
    assert.deepEqual(a, {
      peerId: relay,
      addrs: [`/ip4/198.51.100.10/tcp/4001/p2p/${relay}`, `/ip4/198.51.100.10/udp/4001/quic-v1/p2p/${relay}`],
      ts: 1_700_000_000_000
    })
  })

  it('refuses an announcement of another peer than its signed publisher', () => {
    const bytes = encodeRelayAnnouncement({ peerId: relay, addrs: ['/ip4/198.51.100.10/tcp/4001'], ts: Date.now() })
    assert.throws(() => decodeRelayAnnouncement(bytes, other), (err: Error) => err instanceof InvalidRelayAnnouncementError && /may only announce itself/.test(err.message))
  })

  it('refuses circuit addresses, addresses of other peers, garbage and empty lists', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ v: 1, peerId: relay, addrs: [`/ip4/198.51.100.10/tcp/4001/p2p/${other}/p2p-circuit`], ts: 1 }, /circuit address/],
      [{ v: 1, peerId: relay, addrs: [`/ip4/198.51.100.10/tcp/4001/p2p/${other}`], ts: 1 }, /another peer/],
      [{ v: 1, peerId: relay, addrs: ['not a multiaddr'], ts: 1 }, /unparsable/],
      [{ v: 1, peerId: relay, addrs: [], ts: 1 }, /1–16 addresses/],
      [{ v: 1, peerId: relay, addrs: Array(17).fill('/ip4/198.51.100.10/tcp/4001'), ts: 1 }, /1–16 addresses/],
      [{ v: 2, peerId: relay, addrs: ['/ip4/198.51.100.10/tcp/4001'], ts: 1 }, /unknown version/],
      [{ v: 1, peerId: relay, addrs: ['/ip4/198.51.100.10/tcp/4001'] }, /no timestamp/],
      [[1, 2, 3], /not a map/]
    ]
    for (const [value, re] of cases) {
      assert.throws(() => decodeRelayAnnouncement(dagCbor.encode(value), relay), (err: Error) => err instanceof InvalidRelayAnnouncementError && re.test(err.message), JSON.stringify(value))
    }
    assert.throws(() => decodeRelayAnnouncement(new Uint8Array([0xff, 0x00]), relay), InvalidRelayAnnouncementError)
  })
})
