/**
 * A fake HTTP proxy on 127.0.0.1 that speaks the 407 exchanges of Basic,
 * NTLM and Negotiate (NTLM inside SPNEGO) itself, on node:net, and checks
 * what it is sent: the NTLM type 3 is verified as NTLMv2 against the user's
 * password (MD4 from js-md4, as Node's OpenSSL 3 has none), so a wrong
 * password is refused the way a real proxy would. Past a 200 the tunnel is
 * an echo. Written independently of src/net/proxy-auth*.ts (its own DER and
 * NTLM parsing), so the tests check our messages against another reading.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { createServer, type Server, type Socket } from 'node:net'

const md4 = createRequire(import.meta.url)('js-md4') as { arrayBuffer: (data: Uint8Array) => ArrayBuffer }

export interface FakeProxyInit {
  /** the Proxy-Authenticate headers of the first 407, e.g. ['Negotiate', 'NTLM'] */
  offer: string[]
  user: string
  password: string
  domain: string
  /** close the connection after the first 407 (no `Connection: close` header: as some proxies do) */
  closeAfterFirst407?: boolean
  /** answer a Negotiate type 1 with a SPNEGO reject (a Kerberos-only proxy) */
  kerberosOnly?: boolean
}

export interface FakeProxy {
  port: number
  /** every CONNECT's Proxy-Authorization scheme (`-` when none), in order */
  seen: string[]
  /** how many TCP connections it accepted */
  connections: number
  close: () => Promise<void>
}

const NTLMSSP = Buffer.from('NTLMSSP\0', 'latin1')
const NTLM_OID = Buffer.from([0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a])

function der (tag: number, value: Buffer): Buffer {
  const n = value.length
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff])
  return Buffer.concat([Buffer.from([tag]), len, value])
}

/** NegTokenResp { negState accept-incomplete | reject, supportedMech NTLMSSP, responseToken } */
function negTokenResp (state: 1 | 2, token?: Buffer): Buffer {
  const parts = [der(0xa0, Buffer.from([0x0a, 0x01, state])), der(0xa1, NTLM_OID)]
  if (token != null) parts.push(der(0xa2, der(0x04, token)))
  return der(0xa1, der(0x30, Buffer.concat(parts)))
}

function utf16 (s: string): Buffer {
  return Buffer.from(s, 'utf16le')
}

/** A type 2 with Unicode, NTLM2 session security and target info (the domain). */
function type2 (challenge: Buffer, domain: string): Buffer {
  const name = utf16(domain)
  const info = Buffer.concat([Buffer.from([2, 0, name.length, 0]), name, Buffer.from([0, 0, 0, 0])])
  const head = Buffer.alloc(48)
  NTLMSSP.copy(head, 0)
  head.writeUInt32LE(2, 8)
  head.writeUInt16LE(name.length, 12); head.writeUInt16LE(name.length, 14); head.writeUInt32LE(48, 16)
  head.writeUInt32LE((1 << 0) | (1 << 9) | (1 << 19) | (1 << 23), 20)
  challenge.copy(head, 24)
  head.writeUInt16LE(info.length, 40); head.writeUInt16LE(info.length, 42); head.writeUInt32LE(48 + name.length, 44)
  return Buffer.concat([head, name, info])
}

function field (msg: Buffer, at: number): Buffer {
  const len = msg.readUInt16LE(at)
  const off = msg.readUInt32LE(at + 4)
  return msg.subarray(off, off + len)
}

/** Whether a type 3 carries a valid NTLMv2 response for this user and password. */
export function verifyType3 (msg: Buffer, challenge: Buffer, password: string): { ok: boolean, user: string, domain: string } {
  const nt = field(msg, 20)
  const domain = field(msg, 28).toString('utf16le')
  const user = field(msg, 36).toString('utf16le')
  if (nt.length <= 24) return { ok: false, user, domain } // NTLMv1 or LM: refused
  const ntHash = Buffer.from(md4.arrayBuffer(utf16(password)))
  const ntowf = createHmac('md5', ntHash).update(utf16(user.toUpperCase() + domain)).digest()
  const proof = createHmac('md5', ntowf).update(Buffer.concat([challenge, nt.subarray(16)])).digest()
  return { ok: proof.equals(nt.subarray(0, 16)), user, domain }
}

function ntlmOf (token: Buffer): Buffer {
  const at = token.indexOf(NTLMSSP)
  if (at === -1) throw new Error('no NTLMSSP message in the token')
  return token.subarray(at)
}

function answer (socket: Socket, status: string, headers: string[], body = ''): void {
  socket.write([`HTTP/1.1 ${status}`, ...headers, `Content-Length: ${body.length}`, '', body].join('\r\n'))
}

export async function startFakeProxy (init: FakeProxyInit): Promise<FakeProxy> {
  const seen: string[] = []
  const sockets = new Set<Socket>()
  let connections = 0
  const server: Server = createServer(socket => {
    connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    let buffered = ''
    let challenge: Buffer | undefined
    let tunnel = false
    let closing = false
    socket.on('data', (chunk: Buffer) => {
      if (tunnel) { socket.write(chunk); return }
      // a proxy that closed reads nothing more (end() alone would still read a half-closed socket)
      if (closing) return
      buffered += chunk.toString('latin1')
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) return
      const request = buffered.slice(0, end)
      buffered = buffered.slice(end + 4)
      const auth = /^proxy-authorization: *(\S+)(?: +(\S+))?$/im.exec(request)
      seen.push(auth?.[1] ?? '-')
      const result = handle(init, auth?.[1], auth?.[2] != null ? Buffer.from(auth[2], 'base64') : undefined, challenge)
      challenge = result.challenge
      answer(socket, result.status, result.headers, result.status.startsWith('200') ? '' : 'denied')
      if (result.status.startsWith('200')) tunnel = true
      else if (result.close === true) {
        closing = true
        socket.end()
      }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    seen,
    get connections () { return connections },
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

interface Handled { status: string, headers: string[], challenge?: Buffer, close?: boolean }

function handle (init: FakeProxyInit, scheme: string | undefined, token: Buffer | undefined, challenge: Buffer | undefined): Handled {
  const offer = init.offer.map(o => `Proxy-Authenticate: ${o}`)
  if (scheme == null || token == null) return { status: '407 Proxy Authentication Required', headers: offer, close: init.closeAfterFirst407 }
  if (scheme === 'Basic') {
    const ok = init.offer.some(o => /^basic/i.test(o)) && token.toString() === `${init.domain}\\${init.user}:${init.password}`
    return ok ? { status: '200 Connection established', headers: [] } : { status: '407 Proxy Authentication Required', headers: offer }
  }
  const ntlm = ntlmOf(token)
  const type = ntlm.readUInt32LE(8)
  if (type === 1) {
    if (scheme === 'Negotiate' && init.kerberosOnly === true) return { status: '407 Proxy Authentication Required', headers: [`Proxy-Authenticate: Negotiate ${negTokenResp(2).toString('base64')}`] }
    const fresh = randomBytes(8)
    const t2 = type2(fresh, init.domain)
    const value = scheme === 'Negotiate' ? negTokenResp(1, t2) : t2
    return { status: '407 Proxy Authentication Required', headers: [`Proxy-Authenticate: ${scheme} ${value.toString('base64')}`], challenge: fresh }
  }
  // a type 3 is valid only on the connection that got the challenge
  const verdict = challenge != null ? verifyType3(ntlm, challenge, init.password) : undefined
  const ok = verdict?.ok === true && verdict.user === init.user && verdict.domain.toUpperCase() === init.domain.toUpperCase()
  return ok ? { status: '200 Connection established', headers: [] } : { status: '407 Proxy Authentication Required', headers: offer, close: true }
}
