/** Sockets for the start tests: a listener that holds a port, and what this process has open. */
import { createServer, type Server } from 'node:net'

export async function listen (port = 0): Promise<Server> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  return server
}

export async function close (server: Server): Promise<void> {
  await new Promise<void>(resolve => server.close(() => resolve()))
}

export function portOf (server: Server): number {
  return (server.address() as { port: number }).port
}

/** TCP and UDP handles this process holds (listeners and sockets), by kind. */
export function networkHandles (): string[] {
  return process.getActiveResourcesInfo().filter(r => /TCP|UDP/i.test(r)).sort()
}
