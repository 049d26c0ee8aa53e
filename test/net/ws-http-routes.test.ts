import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { HttpRouteTable, routeListenerRequests } from '../../src/net/ws-http-routes.ts'
import type { IncomingMessage, ServerResponse } from 'node:http'

/** The port of the node's `/ws` listen address. */
function wsPortOf (node: MeshNode): number {
  const addr = node.components.addresses.boundAddrs().find(a => a.includes('/ws'))
  assert.ok(addr != null, 'the node listens on a WebSocket address')
  return Number(addr.split('/')[4])
}

describe('plain HTTP requests on a WebSocket listener', () => {
  let server: MeshNode
  let client: MeshNode
  let port = 0
  let removeRoute = (): void => {}

  before(async () => {
    server = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [multiaddr('/ip4/127.0.0.1/tcp/0/ws')] })
    await server.start()
    removeRoute = server.components.httpRoutes.add((req, res) => {
      if (req.url !== '/generate_204') return false
      res.writeHead(204).end()
      return true
    })
    client = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    await client.start()
    port = wsPortOf(server)
  })

  after(async () => {
    await client?.stop()
    await server?.stop()
  })

  it('are answered by a route that claims them', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/generate_204`, { signal: AbortSignal.timeout(5000) })
    assert.equal(res.status, 204)
  })

  it('that no route claims get the library\'s own answer', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/other`, { signal: AbortSignal.timeout(5000) })
    assert.equal(res.status, 400)
    await res.arrayBuffer()
  })

  it('leave WebSocket upgrades to libp2p', async () => {
    const conn = await client.components.dialler.dialTransport(multiaddr(`/ip4/127.0.0.1/tcp/${port}/ws/p2p/${server.peerId}`), { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), server.peerId)
  })

  it('stop reaching a route once it is removed', async () => {
    removeRoute()
    const res = await fetch(`http://127.0.0.1:${port}/generate_204`, { signal: AbortSignal.timeout(5000) })
    assert.equal(res.status, 400)
    await res.arrayBuffer()
  })
})

describe('routeListenerRequests', () => {
  it('refuses a listener without the method it replaces', () => {
    assert.throws(() => { routeListenerRequests({}, new HttpRouteTable()) }, { code: 'HTTP_ROUTES_UNSUPPORTED' })
  })

  it('asks the routes in the order they were added and falls back when none answers', () => {
    const table = new HttpRouteTable()
    const seen: string[] = []
    table.add(() => { seen.push('first'); return false })
    table.add((req) => { seen.push('second'); return req.url === '/mine' })
    const fallbacks: string[] = []
    const listener: Record<string, unknown> = { httpRequestHandler: (req: IncomingMessage) => { fallbacks.push(req.url ?? '') } }
    routeListenerRequests(listener, table)
    const handler = listener.httpRequestHandler as (req: IncomingMessage, res: ServerResponse) => void
    handler({ url: '/mine' } as IncomingMessage, {} as ServerResponse)
    handler({ url: '/theirs' } as IncomingMessage, {} as ServerResponse)
    assert.deepEqual(seen, ['first', 'second', 'first', 'second'])
    assert.deepEqual(fallbacks, ['/theirs'])
  })
})
