import { createSocket } from 'node:dgram'

/**
 * `n` distinct UDP ports on 127.0.0.1 that were free a moment ago: bound
 * together, read, closed, so the code under test can bind them (a race only
 * with another process binding the same ephemeral port meanwhile).
 */
export async function freeUdpPorts (n: number): Promise<number[]> {
  const sockets = await Promise.all(Array.from({ length: n }, async () => {
    const s = createSocket('udp4')
    await new Promise<void>(resolve => s.bind(0, '127.0.0.1', resolve))
    return s
  }))
  const ports = sockets.map(s => s.address().port)
  await Promise.all(sockets.map(async s => { await new Promise<void>(resolve => { s.close(() => { resolve() }) }) }))
  return ports
}
