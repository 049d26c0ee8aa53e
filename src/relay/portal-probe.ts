import { PORTAL_PROBE_HEADER, PORTAL_PROBE_PATH } from '../net/constants.ts'
import type { HttpRoute, HttpRoutes } from '../net/components.ts'

/**
 * The relay's answer to the captive portal probe (src/net/captive-portal.ts):
 * `GET /generate_204` on any of its WebSocket listeners (plain and TLS) gets
 * `204 No Content` with no body, and the relay's PeerId in a header. A donor
 * that gets anything else from a relay's address talks to a sign-in page.
 * Returns the function that removes the route.
 */
export function servePortalProbe (routes: Pick<HttpRoutes, 'add'>, peerId: string): () => void {
  const route: HttpRoute = (req, res) => {
    const path = (req.url ?? '').split('?')[0]
    if (path !== PORTAL_PROBE_PATH || (req.method !== 'GET' && req.method !== 'HEAD')) return false
    // no-store: a cache between donor and relay must never answer for the relay
    res.writeHead(204, { [PORTAL_PROBE_HEADER]: peerId, 'cache-control': 'no-store' }).end()
    return true
  }
  return routes.add(route)
}
