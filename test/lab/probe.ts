/**
 * A tiny network probe run inside lab namespaces (with the pinned Node) to
 * check that the topology behaves as declared. Every wait is bounded.
 *
 *   probe.ts serve <ip> <tcp:PORT|udp:PORT>...   answers each TCP connection / UDP datagram with
 *                                               "<seen source ip>:<port>"; prints "ready"; runs until killed
 *   probe.ts tcp <ip> <port> <timeoutMs>         prints {"ok":true,"seen":…,"ms":…} or {"ok":false,"error":…,"ms":…}
 *   probe.ts udp <localPort> <timeoutMs> <ip:port>...
 *                                               sends from ONE socket to each target, prints {"replies":{target: seen|null}}
 */
import { createSocket } from 'node:dgram'
import { connect, createServer } from 'node:net'

const [mode, ...rest] = process.argv.slice(2)

function serve (ip: string, specs: string[]): void {
  let pending = specs.length
  const ready = (): void => { if (--pending === 0) process.stdout.write('ready\n') }
  for (const spec of specs) {
    const [proto, portText] = spec.split(':')
    const port = Number(portText)
    if (proto === 'tcp') {
      createServer(sock => { sock.end(`${sock.remoteAddress ?? '?'}:${sock.remotePort ?? 0}\n`) }).listen(port, ip, ready)
    } else if (proto === 'udp') {
      const s = createSocket('udp4')
      s.on('message', (_msg, rinfo) => { s.send(`${rinfo.address}:${rinfo.port}`, rinfo.port, rinfo.address) })
      s.bind(port, ip, ready)
    } else {
      throw new Error(`bad spec ${spec}`)
    }
  }
}

function tcp (ip: string, port: number, timeoutMs: number): void {
  const started = Date.now()
  const sock = connect({ host: ip, port })
  let data = ''
  const done = (v: Record<string, unknown>): void => {
    process.stdout.write(JSON.stringify({ ...v, ms: Date.now() - started }) + '\n')
    sock.destroy()
    process.exit(0)
  }
  const timer = setTimeout(() => done({ ok: false, error: 'ETIMEDOUT' }), timeoutMs)
  sock.on('data', d => { data += d.toString() })
  sock.on('end', () => { clearTimeout(timer); done({ ok: true, seen: data.trim() }) })
  sock.on('error', (err: NodeJS.ErrnoException) => { clearTimeout(timer); done({ ok: false, error: err.code ?? err.message }) })
}

function udp (localPort: number, timeoutMs: number, targets: string[]): void {
  const s = createSocket('udp4')
  const replies: Record<string, string | null> = Object.fromEntries(targets.map(t => [t, null]))
  const finish = (): void => {
    process.stdout.write(JSON.stringify({ replies }) + '\n')
    s.close()
    process.exit(0)
  }
  s.on('message', (msg, rinfo) => {
    const key = `${rinfo.address}:${rinfo.port}`
    if (key in replies && replies[key] == null) replies[key] = msg.toString()
    if (Object.values(replies).every(v => v != null)) finish()
  })
  s.on('error', () => finish())
  s.bind(localPort, () => {
    // three rounds, in case the first datagram races the peer's socket
    for (let round = 0; round < 3; round++) {
      setTimeout(() => {
        for (const t of targets) {
          const [ip, port] = t.split(':')
          s.send('probe', Number(port), ip)
        }
      }, round * 150)
    }
    setTimeout(finish, timeoutMs)
  })
}

if (mode === 'serve') {
  serve(rest[0], rest.slice(1))
  // never outlive a lab run, even if nobody stops it
  setTimeout(() => process.exit(0), 300_000).unref()
} else if (mode === 'tcp') tcp(rest[0], Number(rest[1]), Number(rest[2]))
else if (mode === 'udp') udp(Number(rest[0]), Number(rest[1]), rest.slice(2))
else {
  process.stderr.write('usage: probe.ts serve|tcp|udp …\n')
  process.exit(2)
}
