/**
 * Proxy authentication beyond Basic, against a fake proxy on 127.0.0.1
 * (proxy-auth-fake.ts) that verifies our NTLMv2 responses with the password:
 * the NTLM handshake on one kept-alive connection, a proxy that closes after
 * its first 407, rejected credentials, Negotiate carrying NTLM, Basic chosen
 * when offered, and no password in any error or status.
 */
import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import type { Socket } from 'node:net'
import { openTunnel, ProxyAuthError } from '../../src/net/proxy-tunnel.ts'
import { ProxyAuthMemory, chooseScheme, ntlmType3, parseChallenges, proxyCredentials } from '../../src/net/proxy-auth.ts'
import { parseProxyUrl, redactCredentials, type ProxySpec } from '../../src/net/proxy-env.ts'
import { describeDialError } from '../../src/net/dial-error.ts'
import { startFakeProxy, type FakeProxyInit } from './proxy-auth-fake.ts'

const USER = 'donor'
const PASSWORD = 's3cret:p@ss'
const DOMAIN = 'LAB'
const TARGET = '198.51.100.10'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function fake (init: Partial<FakeProxyInit> & Pick<FakeProxyInit, 'offer'>): Promise<Awaited<ReturnType<typeof startFakeProxy>>> {
  const proxy = await startFakeProxy({ user: USER, password: PASSWORD, domain: DOMAIN, ...init })
  cleanups.push(proxy.close)
  return proxy
}

function spec (port: number, userinfo = `${DOMAIN}%5C${USER}:${encodeURIComponent(PASSWORD)}@`): ProxySpec {
  return parseProxyUrl(`http://${userinfo}127.0.0.1:${port}`, 'HTTPS_PROXY')
}

/** The tunnel carries bytes: the fake echoes them once it said 200. */
async function echoes (socket: Socket): Promise<void> {
  const back = new Promise<string>(resolve => socket.once('data', (d: Buffer) => { resolve(d.toString()) }))
  socket.write('ping')
  assert.equal(await back, 'ping')
  socket.destroy()
}

function assertNoPassword (value: unknown): void {
  const text = value instanceof Error ? `${value.message} ${JSON.stringify(value)}` : JSON.stringify(value)
  assert.ok(!text.includes(PASSWORD) && !text.includes(encodeURIComponent(PASSWORD)), `no password in ${text}`)
}

describe('NTLM to an HTTP proxy', () => {
  it('opens the tunnel after CONNECT, 407 NTLM, type 1, the challenge and type 3, all on one connection', async () => {
    const proxy = await fake({ offer: ['NTLM'] })
    const memory = new ProxyAuthMemory()
    const p = spec(proxy.port)
    await echoes(await openTunnel(p, TARGET, 443, { auth: memory }))
    assert.deepEqual(proxy.seen, ['-', 'NTLM', 'NTLM'])
    assert.equal(proxy.connections, 1)
    const view = memory.view(p)
    assert.deepEqual([view?.last, view?.scheme, view?.passed, view?.refused, view?.offered], ['passed', 'ntlm', 1, 0, ['NTLM']])
    assertNoPassword(view)
  })

  it('picks NTLM when the proxy offers Negotiate and NTLM, and Basic over both when Basic is offered', async () => {
    const ntlmProxy = await fake({ offer: ['Negotiate', 'NTLM'] })
    await echoes(await openTunnel(spec(ntlmProxy.port), TARGET, 443))
    assert.deepEqual(ntlmProxy.seen, ['-', 'NTLM', 'NTLM'])

    const basicProxy = await fake({ offer: ['Negotiate', 'NTLM', 'Basic realm="corp, west"'] })
    const memory = new ProxyAuthMemory()
    const p = spec(basicProxy.port)
    await echoes(await openTunnel(p, TARGET, 443, { auth: memory }))
    // the second tunnel sends Basic at once: this proxy offered it
    await echoes(await openTunnel(p, TARGET, 443, { auth: memory }))
    assert.deepEqual(basicProxy.seen, ['-', 'Basic', 'Basic'])
    assert.deepEqual([memory.view(p)?.scheme, memory.view(p)?.passed], ['basic', 2])
  })

  it('sends the type 1 on a new connection when the proxy closed the first after its 407', async () => {
    const proxy = await fake({ offer: ['NTLM'], closeAfterFirst407: true })
    await echoes(await openTunnel(spec(proxy.port), TARGET, 443))
    assert.deepEqual(proxy.seen, ['-', 'NTLM', 'NTLM'])
    assert.equal(proxy.connections, 2)
  })

  it('reports a wrong password as PROXY_AUTH_FAILED at phase proxy, naming the scheme and the user but not the password', async () => {
    const proxy = await fake({ offer: ['NTLM'] })
    const memory = new ProxyAuthMemory()
    const p = spec(proxy.port, `${DOMAIN}%5C${USER}:wrong-${encodeURIComponent(PASSWORD)}@`)
    const err = await openTunnel(p, TARGET, 443, { auth: memory }).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof ProxyAuthError, String(err))
    assert.deepEqual([err.code, err.scheme, err.offered, err.phase, err.status], ['PROXY_AUTH_FAILED', 'ntlm', ['NTLM'], 'proxy', 407])
    assert.match(err.message, /LAB\\donor with NTLM/)
    assert.match(err.message, /http:\/\/\*\*\*@127\.0\.0\.1/)
    assert.ok(!err.message.includes('wrong-'), 'no password in the message')
    const d = describeDialError(err, { phase: 'proxy', transport: 'wss', elapsedMs: 5 })
    assert.deepEqual([d.phase, d.code], ['proxy', 'PROXY_AUTH_FAILED'])
    assert.deepEqual([memory.view(p)?.last, memory.view(p)?.code, memory.view(p)?.refused], ['failed', 'PROXY_AUTH_FAILED', 1])
  })

  it('without credentials says PROXY_AUTH_REQUIRED with the schemes offered and how to give a domain user', async () => {
    const proxy = await fake({ offer: ['Negotiate', 'NTLM'] })
    const memory = new ProxyAuthMemory()
    const p = spec(proxy.port, '')
    await assert.rejects(openTunnel(p, TARGET, 443, { auth: memory }), (err: unknown) => {
      assert.ok(err instanceof ProxyAuthError)
      assert.equal(err.code, 'PROXY_AUTH_REQUIRED')
      assert.deepEqual(err.offered, ['Negotiate', 'NTLM'])
      assert.match(err.message, /asks for Negotiate, NTLM/)
      assert.match(err.message, /DOMAIN%5Cuser:password/)
      return true
    })
    assert.deepEqual(proxy.seen, ['-'])
    assert.equal(memory.view(p)?.last, 'required')
  })
})

describe('Negotiate carrying NTLM (SPNEGO)', () => {
  it('opens the tunnel through a proxy that offers only Negotiate', async () => {
    const proxy = await fake({ offer: ['Negotiate'] })
    const memory = new ProxyAuthMemory()
    const p = spec(proxy.port)
    await echoes(await openTunnel(p, TARGET, 443, { auth: memory }))
    assert.deepEqual(proxy.seen, ['-', 'Negotiate', 'Negotiate'])
    assert.equal(memory.view(p)?.scheme, 'negotiate')
  })

  it('says PROXY_AUTH_UNSUPPORTED when the Negotiate proxy rejects NTLM (it wants Kerberos)', async () => {
    const proxy = await fake({ offer: ['Negotiate'], kerberosOnly: true })
    await assert.rejects(openTunnel(spec(proxy.port), TARGET, 443), (err: unknown) => {
      assert.ok(err instanceof ProxyAuthError)
      assert.deepEqual([err.code, err.scheme], ['PROXY_AUTH_UNSUPPORTED', 'negotiate'])
      assert.match(err.message, /Kerberos/)
      return true
    })
  })

  it('says PROXY_AUTH_UNSUPPORTED, sending no credentials, when only schemes we cannot do are offered', async () => {
    const proxy = await fake({ offer: ['Digest realm="corp", nonce="abc"', 'Kerberos'] })
    await assert.rejects(openTunnel(spec(proxy.port), TARGET, 443), { name: 'ProxyAuthError', code: 'PROXY_AUTH_UNSUPPORTED' })
    assert.deepEqual(proxy.seen, ['-'], 'no credentials in any scheme')
  })
})

describe('schemes and credentials', () => {
  it('reads several challenges from one header and from several, keeping auth-params with their scheme', () => {
    const c = parseChallenges(['Basic realm="a, b", charset="UTF-8", NTLM', 'Negotiate'])
    assert.deepEqual(c.map(x => [x.name, x.rest]), [['Basic', 'realm="a, b", charset="UTF-8"'], ['NTLM', ''], ['Negotiate', '']])
    assert.equal(chooseScheme(c), 'basic')
    assert.equal(chooseScheme(parseChallenges(['Negotiate, NTLM'])), 'ntlm')
    assert.equal(chooseScheme(parseChallenges(['Negotiate'])), 'negotiate')
    assert.equal(chooseScheme(parseChallenges(['Digest realm="x"'])), undefined)
  })

  it('splits DOMAIN\\user from the proxy URL, and takes user or user@domain without a domain', () => {
    assert.deepEqual(proxyCredentials(parseProxyUrl('http://LAB%5Cdonor:pw@proxy:3128', 'HTTPS_PROXY')), { domain: 'LAB', user: 'donor', password: 'pw' })
    assert.deepEqual(proxyCredentials(parseProxyUrl('http://donor:pw@proxy:3128', 'HTTPS_PROXY')), { user: 'donor', password: 'pw' })
    assert.deepEqual(proxyCredentials(parseProxyUrl('http://donor%40lab.example:pw@proxy:3128', 'HTTPS_PROXY')), { user: 'donor@lab.example', password: 'pw' })
    assert.equal(proxyCredentials(parseProxyUrl('http://proxy:3128', 'HTTPS_PROXY')), undefined)
  })

  it('takes DOMAIN\\user typed without percent-encoding, with or without a scheme', () => {
    for (const value of ['http://LAB\\donor:pw@proxy:3128', 'LAB\\donor:pw@proxy:3128']) {
      const p = parseProxyUrl(value, 'HTTPS_PROXY')
      assert.deepEqual([p.host, p.port, p.url, proxyCredentials(p)], ['proxy', 3128, 'http://***@proxy:3128', { domain: 'LAB', user: 'donor', password: 'pw' }])
    }
  })

  it('answers a type 2 whose target name points outside the message (squid\'s ntlm_fake_auth) with a well-formed NTLMv2 type 3', () => {
    // recorded from squid 5.7 with auth_param ntlm program ntlm_fake_auth: OEM, NTLM2, the name's offset uninitialised
    const type2 = Buffer.from('TlRMTVNTUAACAAAACQAJAK6qqqoGgggA7LOpDRd48IsAAAAAAAA6AFdPUktHUk9VUA==', 'base64')
    const t3 = ntlmType3(type2, { domain: DOMAIN, user: USER, password: PASSWORD })
    const field = (at: number): Buffer => t3.subarray(t3.readUInt32LE(at + 4), t3.readUInt32LE(at + 4) + t3.readUInt16LE(at))
    assert.equal(t3.subarray(0, 8).toString('latin1'), 'NTLMSSP\0')
    assert.equal(t3.readUInt32LE(8), 3)
    assert.deepEqual([field(28).toString('latin1'), field(36).toString('latin1')], [DOMAIN, USER])
    assert.ok(field(20).length > 24, 'an NTLMv2 response, not the 24-byte NTLMv1 one')
  })

  it('redacts a DOMAIN\\user proxy URL in its spec and in free text', () => {
    const url = `http://${DOMAIN}%5C${USER}:${encodeURIComponent(PASSWORD)}@proxy.corp:3128`
    assert.equal(parseProxyUrl(url, 'HTTPS_PROXY').url, 'http://***@proxy.corp:3128')
    assert.equal(redactCredentials(`HTTPS_PROXY=${url} failed`), 'HTTPS_PROXY=http://***@proxy.corp:3128 failed')
    assert.equal(redactCredentials(`via http://${DOMAIN}\\${USER}:pw@proxy.corp:3128`), 'via http://***@proxy.corp:3128')
  })
})
