import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { PortMapper, type MappedAddressBook, type MappingClock } from '../../src/net/port-mapping.ts'
import {
  mappingCandidate, parseProcNetRoute, defaultLanRoute, PortMappingNoAnswerError, PortMappingRefusedError, PortMappingUnsupportedError,
  type GatewayMapping, type LanRoute, type MappingClient, type MappingRequest
} from '../../src/net/port-mapping-gateway.ts'
import type { PortMappingProtocol } from '../../src/core/types.ts'

const ROUTE: LanRoute = { gateway: '192.168.1.1', iface: 'eth0', localAddress: '192.168.1.20' }
const BOUND = ['/ip4/192.168.1.20/tcp/4001', '/ip4/192.168.1.20/udp/4001/quic-v1', '/ip4/127.0.0.1/tcp/4001']
/** what `npm start`'s demo and the in-process tests listen on */
const LOOPBACK_BOUND = ['/ip4/127.0.0.1/tcp/41001', '/ip4/127.0.0.1/udp/41001/quic-v1', '/ip4/127.0.0.1/tcp/41002/ws']

/** Timers that run only when the test advances the clock. */
class FakeClock implements MappingClock {
  t = 1_000_000
  timers: Array<{ at: number, fn: () => void, id: number }> = []
  #next = 0
  now = (): number => this.t
  setTimeout = (fn: () => void, ms: number): unknown => { const id = ++this.#next; this.timers.push({ at: this.t + ms, fn, id }); return id }
  clearTimeout = (handle: unknown): void => { this.timers = this.timers.filter(x => x.id !== handle) }
  /** moves time on, running each timer that falls due, and lets the async work they start finish */
  async advance (ms: number): Promise<void> {
    const end = this.t + ms
    for (;;) {
      const due = this.timers.filter(x => x.at <= end).sort((a, b) => a.at - b.at)[0]
      if (due == null) break
      this.timers = this.timers.filter(x => x !== due)
      this.t = due.at
      due.fn()
      await settle()
    }
    this.t = end
    await settle()
  }
}

async function settle (): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise(resolve => setImmediate(resolve))
}

/** A gateway speaking one protocol: grants, refuses or stays silent, and records every request. */
class FakeGateway implements MappingClient {
  readonly protocol: PortMappingProtocol
  readonly gateway = ROUTE.gateway
  requests: MappingRequest[] = []
  unmapped: GatewayMapping[] = []
  closed = false
  answer: 'grant' | 'refuse' | 'silent' | 'unsupported'
  lifetime = 3600

  constructor (protocol: PortMappingProtocol, answer: FakeGateway['answer']) {
    this.protocol = protocol
    this.answer = answer
  }

  map = async (req: MappingRequest): Promise<GatewayMapping> => {
    this.requests.push(req)
    const where = { protocol: this.protocol, gateway: this.gateway, phase: 'map' as const }
    if (this.answer === 'refuse') throw new PortMappingRefusedError('NOT_AUTHORIZED', where)
    if (this.answer === 'silent') throw new PortMappingNoAnswerError('no answer', where)
    if (this.answer === 'unsupported') throw new PortMappingUnsupportedError('UNSUPP_VERSION', where)
    return { transport: req.transport, host: req.host, port: req.port, externalHost: '203.0.113.10', externalPort: req.suggestedExternalPort + 10000, lifetimeSeconds: this.lifetime }
  }

  unmap = async (m: GatewayMapping): Promise<void> => { this.unmapped.push(m) }
  close = (): void => { this.closed = true }
}

class RecordingBook implements MappedAddressBook {
  added: string[] = []
  removed: string[] = []
  verified = new Set<string>()
  add = (m: GatewayMapping): void => { this.added.push(`${m.transport} ${m.externalHost}:${m.externalPort}`) }
  remove = (m: GatewayMapping): void => { this.removed.push(`${m.transport} ${m.externalHost}:${m.externalPort}`) }
  confirmed = (m: GatewayMapping): boolean => this.verified.has(`${m.externalHost}:${m.externalPort}`)
}

function mapper (gateways: FakeGateway[], opts: { bound?: string[], route?: LanRoute | undefined, clock?: FakeClock, enabled?: boolean } = {}): { mapper: PortMapper, book: RecordingBook, created: PortMappingProtocol[] } {
  const book = new RecordingBook()
  const created: PortMappingProtocol[] = []
  const m = new PortMapper({ enabled: opts.enabled, leaseSeconds: 3600, retryMs: 60_000 }, {
    boundAddrs: () => opts.bound ?? BOUND,
    addresses: book,
    route: () => 'route' in opts ? opts.route : ROUTE,
    clients: gateways.map(g => ({ protocol: g.protocol, create: () => { created.push(g.protocol); return g } })),
    clock: opts.clock ?? new FakeClock()
  })
  return { mapper: m, book, created }
}

describe('the port-mapping guard', () => {
  it('a node listening on loopback only (the demo, the in-process tests) does not qualify, even with a private default route', () => {
    const c = mappingCandidate(LOOPBACK_BOUND, ROUTE)
    assert.equal(c.applies, false)
    assert.match(c.applies ? '' : c.reason, /no TCP or QUIC listener on 192\.168\.1\.20/)
  })

  it('a PortMapper on the demo\'s loopback listeners never creates a protocol client: nothing is sent', async () => {
    const pcp = new FakeGateway('pcp', 'grant')
    const { mapper: m, created } = mapper([pcp], { bound: LOOPBACK_BOUND })
    m.start()
    await settle()
    assert.deepEqual(created, [])
    assert.equal(pcp.requests.length, 0)
    assert.equal(m.status().state, 'not-applicable')
    await m.stop()
  })

  it('no default gateway, a public LAN address or a relay-only node: not applicable, each with its reason', () => {
    assert.match(JSON.stringify(mappingCandidate(BOUND, undefined)), /no IPv4 default gateway/)
    assert.match(JSON.stringify(mappingCandidate(['/ip4/198.51.100.2/tcp/1'], { gateway: '198.51.100.1', iface: 'eth0', localAddress: '198.51.100.2' })), /not a private LAN address/)
    assert.match(JSON.stringify(mappingCandidate([], ROUTE)), /relays only/)
  })

  it('the TCP and QUIC listeners on the LAN address (or the wildcard) are mapped; WebSocket and other hosts are not', () => {
    const c = mappingCandidate(['/ip4/0.0.0.0/tcp/4001', '/ip4/192.168.1.20/udp/4002/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', '/ip4/192.168.1.20/tcp/4003/ws', '/ip4/10.9.9.9/tcp/4004'], ROUTE)
    assert.ok(c.applies)
    assert.deepEqual(c.listens, [{ transport: 'tcp', host: '192.168.1.20', port: 4001 }, { transport: 'udp', host: '192.168.1.20', port: 4002 }])
  })

  it('switched off, it sends nothing and says so', async () => {
    const pcp = new FakeGateway('pcp', 'grant')
    const { mapper: m, created } = mapper([pcp], { enabled: false })
    m.start()
    await settle()
    assert.deepEqual(created, [])
    assert.equal(m.status().state, 'off')
  })

  it('the default route comes from /proc/net/route (little-endian hex), with our address on its interface', () => {
    const text = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n'
    assert.deepEqual(parseProcNetRoute(text), [{ iface: 'eth0', gateway: '192.168.1.1' }])
    const route = defaultLanRoute(() => text, () => ({ eth0: [{ address: '192.168.1.20', family: 'IPv4', internal: false, netmask: '255.255.255.0', mac: '', cidr: null }] }))
    assert.deepEqual(route, { gateway: '192.168.1.1', iface: 'eth0', localAddress: '192.168.1.20' })
    assert.equal(defaultLanRoute(() => { throw new Error('ENOENT') }), undefined)
  })
})

describe('PortMapper', () => {
  it('tries PCP, then NAT-PMP, then UPnP, and keeps the first that maps; each failure is recorded with protocol, gateway, phase and code', async () => {
    const pcp = new FakeGateway('pcp', 'silent')
    const natpmp = new FakeGateway('natpmp', 'unsupported')
    const upnp = new FakeGateway('upnp', 'grant')
    const { mapper: m, book, created } = mapper([pcp, natpmp, upnp])
    m.start()
    await settle()
    assert.deepEqual(created, ['pcp', 'natpmp', 'upnp'])
    assert.ok(pcp.closed && natpmp.closed && !upnp.closed, 'the clients that failed are closed')
    const s = m.status()
    assert.equal(s.state, 'mapped')
    assert.equal(s.protocol, 'upnp')
    assert.equal(s.gateway, '192.168.1.1')
    assert.deepEqual(s.mappings.map(x => [x.transport, x.internal, x.external, x.lifetimeSeconds, x.confirmed]), [['tcp', '192.168.1.20:4001', '203.0.113.10:14001', 3600, false], ['udp', '192.168.1.20:4001', '203.0.113.10:14001', 3600, false]])
    assert.deepEqual(s.failures.map(f => [f.protocol, f.gateway, f.phase, f.code]), [['pcp', '192.168.1.1', 'map', 'PORT_MAPPING_NO_ANSWER'], ['natpmp', '192.168.1.1', 'map', 'PORT_MAPPING_UNSUPPORTED']])
    assert.deepEqual(book.added, ['tcp 203.0.113.10:14001', 'udp 203.0.113.10:14001'])
    book.verified.add('203.0.113.10:14001')
    assert.equal(m.status().mappings[0].confirmed, true)
    await m.stop()
  })

  it('renews each lease at half its lifetime, asking for the same external port, and not before', async () => {
    const clock = new FakeClock()
    const pcp = new FakeGateway('pcp', 'grant')
    const { mapper: m } = mapper([pcp], { clock })
    m.start()
    await settle()
    assert.equal(pcp.requests.length, 2)
    await clock.advance(1799_000)
    assert.equal(pcp.requests.length, 2, 'nothing before half the lease')
    await clock.advance(1_000)
    assert.equal(pcp.requests.length, 4, 'both leases renewed at 1800 s')
    assert.deepEqual(pcp.requests.slice(2).map(r => r.suggestedExternalPort), [14001, 14001])
    assert.equal(m.status().mappings[0].renewedAt, new Date(clock.t).toISOString())
    await clock.advance(1800_000)
    assert.equal(pcp.requests.length, 6, 'and again half a lease later')
    await m.stop()
  })

  it('a renewal that fails is retried before the lease ends; a lease that ends unrenewed is lost, withdrawn, and asked for again later', async () => {
    const clock = new FakeClock()
    const pcp = new FakeGateway('pcp', 'grant')
    const { mapper: m, book } = mapper([pcp], { clock, bound: ['/ip4/192.168.1.20/tcp/4001'] })
    m.start()
    await settle()
    pcp.answer = 'silent'
    await clock.advance(1800_000)
    assert.equal(pcp.requests.length, 2, 'the renewal at half the lease was sent')
    assert.equal(m.status().state, 'mapped', 'a failed renewal keeps the lease while it lasts')
    assert.equal(m.status().failures.at(-1)?.phase, 'renew')
    await clock.advance(450_000)
    assert.equal(pcp.requests.length, 3, 'retried a quarter of the remaining lease later')
    await clock.advance(1350_000)
    const s = m.status()
    assert.equal(s.state, 'lost')
    assert.equal(s.mappings.length, 0)
    assert.ok(s.failures.some(f => f.code === 'PORT_MAPPING_LEASE_LOST'))
    assert.deepEqual(book.removed, ['tcp 203.0.113.10:14001'])
    pcp.answer = 'grant'
    await clock.advance(60_000)
    assert.equal(m.status().state, 'mapped', 'asked again after retryMs')
    await m.stop()
  })

  it('stop deletes every mapping at the gateway, withdraws the addresses and renews nothing more', async () => {
    const clock = new FakeClock()
    const natpmp = new FakeGateway('natpmp', 'grant')
    const { mapper: m, book } = mapper([natpmp], { clock })
    m.start()
    await settle()
    await m.stop()
    assert.deepEqual(natpmp.unmapped.map(x => `${x.transport} ${x.externalPort}`), ['tcp 14001', 'udp 14001'])
    assert.deepEqual(book.removed, ['tcp 203.0.113.10:14001', 'udp 203.0.113.10:14001'])
    assert.ok(natpmp.closed)
    assert.equal(m.status().state, 'removed')
    assert.equal(clock.timers.length, 0, 'no renewal timer left')
    const before = natpmp.requests.length
    await clock.advance(7200_000)
    assert.equal(natpmp.requests.length, before)
  })

  it('every protocol refused: failed, with the refusal named, and a retry scheduled', async () => {
    const clock = new FakeClock()
    const { mapper: m } = mapper([new FakeGateway('pcp', 'refuse'), new FakeGateway('natpmp', 'silent')], { clock })
    m.start()
    await settle()
    const s = m.status()
    assert.equal(s.state, 'failed')
    assert.match(s.reason, /refused/)
    assert.ok(s.failures.some(f => f.code === 'PORT_MAPPING_REFUSED' && f.protocol === 'pcp'))
    assert.equal(clock.timers.length, 1)
    await m.stop()
  })

  it('a gateway that keeps failing is asked again after retryMs, then twice as long each round, and the count restarts once it maps', async () => {
    const clock = new FakeClock()
    const pcp = new FakeGateway('pcp', 'silent')
    const { mapper: m } = mapper([pcp], { clock, bound: ['/ip4/192.168.1.20/tcp/4001'] })
    m.start()
    await settle()
    const delays: number[] = []
    for (let i = 0; i < 3; i++) {
      const next = clock.timers[0]
      delays.push(next.at - clock.t)
      await clock.advance(next.at - clock.t)
    }
    assert.deepEqual(delays, [60_000, 120_000, 240_000])
    assert.equal(pcp.requests.length, 4)
    assert.match(m.status().reason, /no gateway answered .*; asking again in 480\.0 s/)
    pcp.answer = 'grant'
    await clock.advance(480_000)
    assert.equal(m.status().state, 'mapped')
    await m.stop()
  })
})
