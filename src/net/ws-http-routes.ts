import type { IncomingMessage, ServerResponse } from 'node:http'
import { WorldComputeError } from '../core/errors.ts'
import type { HttpRoute, HttpRoutes } from './components.ts'

/**
 * Plain HTTP requests on this node's WebSocket listeners (`/ws`, and `/tls/ws`
 * on a relay's 443): @libp2p/websockets answers every request that is not a
 * WebSocket upgrade with a 400 from one method of its listener. A relay serves
 * more than upgrades on those ports — a probe that tells its clients they
 * reach the relay and not a network's sign-in page, and transports for
 * networks whose proxies pass no upgrade — so the listener asks this table
 * first and falls back to the library's answer.
 *
 * Routes are consulted in the order they were added; the first that answers
 * (returns true) owns the request.
 */
export class HttpRouteTable implements HttpRoutes {
  readonly #routes = new Set<HttpRoute>()

  add (route: HttpRoute): () => void {
    this.#routes.add(route)
    return () => { this.#routes.delete(route) }
  }

  /** true when a route answered the request */
  handle (req: IncomingMessage, res: ServerResponse): boolean {
    for (const route of this.#routes) {
      if (route(req, res)) return true
    }
    return false
  }
}

type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void

/**
 * Puts `table` in front of a @libp2p/websockets listener's answer to plain
 * HTTP requests. The listener binds `httpRequestHandler` when it creates its
 * HTTP(S) server in `listen()`, so replacing it on the instance before then
 * is enough; a library without that method is refused at start, loudly,
 * rather than serving the routes on no port.
 */
export function routeListenerRequests (listener: Record<string, unknown>, table: HttpRouteTable): void {
  const original = listener.httpRequestHandler
  if (typeof original !== 'function') {
    throw new WorldComputeError('@libp2p/websockets listener has no httpRequestHandler method: this libp2p version is not the one the relay\'s HTTP routes were written for (src/net/ws-http-routes.ts)', 'HTTP_ROUTES_UNSUPPORTED')
  }
  const fallback = original as RequestHandler
  listener.httpRequestHandler = function (this: unknown, req: IncomingMessage, res: ServerResponse): void {
    if (!table.handle(req, res)) fallback.call(this, req, res)
  }
}
