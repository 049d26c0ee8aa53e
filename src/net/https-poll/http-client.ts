import http from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/** One answered poll request: its status and complete body. */
export interface PollResponse {
  status: number
  body: Uint8Array
}

/** The HTTP exchanges of one poll session; the session logic sees only this (tests pass a fake). */
export interface PollHttp {
  post: (path: string, body: Uint8Array, options: { signal: AbortSignal }) => Promise<PollResponse>
  /** closes the pooled connections */
  close: () => void
}

/** Opens one connection to the relay (direct or through a proxy's tunnel, TLS on top when the address says so). */
export type PollConnector = (signal: AbortSignal) => Promise<Socket | Duplex>

export interface PollHttpInit {
  /** the Host header: `host:port` */
  authority: string
  connect: PollConnector
  /**
   * connections kept at most: one long poll and one upload in flight, kept
   * alive between requests where the path allows it @default 2
   */
  maxConnections?: number
}

/**
 * node:http over connections we open ourselves: an Agent whose
 * `createConnection` hands over a socket from `connect` (a CONNECT tunnel
 * with TLS inside, or a direct TLS socket), so requests reuse the
 * connection while a proxy keeps it alive and open a new one when it does not.
 */
export function pollHttp (init: PollHttpInit): PollHttp {
  const agent = new http.Agent({ keepAlive: true, maxSockets: init.maxConnections ?? 2, maxFreeSockets: init.maxConnections ?? 2 })
  const controller = new AbortController()
  agent.createConnection = ((_options: unknown, callback: (err: Error | null, socket?: Duplex) => void): undefined => {
    init.connect(controller.signal).then(socket => { callback(null, socket) }, (err: Error) => { callback(err) })
    return undefined
  }) as unknown as typeof agent.createConnection
  return {
    post: async (path, body, options) => await post(agent, init.authority, path, body, options.signal),
    close: () => {
      controller.abort(new Error('poll session closed'))
      agent.destroy()
    }
  }
}

async function post (agent: http.Agent, authority: string, path: string, body: Uint8Array, signal: AbortSignal): Promise<PollResponse> {
  return await new Promise<PollResponse>((resolve, reject) => {
    const req = http.request({
      agent,
      method: 'POST',
      path,
      signal,
      headers: {
        Host: authority,
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(body.byteLength),
        'Cache-Control': 'no-store'
      }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      res.once('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }) })
      res.once('error', reject)
    })
    req.once('error', reject)
    req.end(body)
  })
}
