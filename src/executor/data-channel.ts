/**
 * The data socket between the parent and its sandbox (stream-io.ts), made by
 * the parent itself rather than by child_process: a socket's `onread` (reads
 * straight into buffers the reader picks) can only be set when the socket is
 * created, and child_process creates its stdio sockets without one. The
 * parent listens on a Unix socket in a private folder (mode 0700, from
 * mkdtemp), connects to it, and passes the accepted end as the sandbox's fd
 * SANDBOX_DATA_FD; the folder and its listener are gone before the sandbox
 * starts, so the sandbox only inherits an fd, as with a socket pair, and its
 * permission flags need nothing more.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, type OnReadOpts, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface DataChannel {
  /** the parent's end, reading through `onread` */
  ours: Socket
  /** the sandbox's end: pass it in the sandbox's stdio, then destroy this process's copy */
  theirs: Socket
}

/** A connected pair of sockets whose first end reads through `onread`. */
export async function openDataChannel (onread: OnReadOpts): Promise<DataChannel> {
  const dir = await mkdtemp(join(tmpdir(), 'wc-data-'))
  const server = createServer()
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(join(dir, 'sock'), resolve)
    })
    const accepted = new Promise<Socket>((resolve, reject) => {
      server.once('connection', resolve)
      server.once('error', reject)
    })
    const ours = connect({ path: join(dir, 'sock'), onread })
    const connected = new Promise<void>((resolve, reject) => {
      ours.once('connect', resolve)
      ours.once('error', reject)
    })
    try {
      const [, theirs] = await Promise.all([connected, accepted])
      return { ours, theirs }
    } catch (err) {
      ours.destroy()
      throw err
    }
  } finally {
    server.close()
    await rm(dir, { recursive: true, force: true })
  }
}
