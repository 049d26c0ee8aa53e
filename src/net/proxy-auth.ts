import { createRequire } from 'node:module'
import { spnegoInit, spnegoResponse, spnegoResponseToken } from './proxy-auth-spnego.ts'
import type { ProxySpec } from './proxy-env.ts'
import type { ProxyAuthView } from '../core/types.ts'

/**
 * Authentication to HTTP(S) proxies: which scheme to answer a 407 with, and
 * the tokens of each. The CONNECT rounds themselves are in proxy-tunnel.ts.
 *
 * Schemes we can do: `Basic` (RFC 7617), `NTLM` (NTLMv2, with the messages
 * of @ewsjs/ntlm-client: it carries its own MD4 and DES, which Node's
 * OpenSSL 3 no longer has), and `Negotiate` carrying NTLM inside SPNEGO
 * (proxy-auth-spnego.ts). Kerberos inside Negotiate needs the system's
 * GSS-API (a native module and a build step): not done; a proxy that offers
 * only Kerberos rejects our NTLM-in-SPNEGO and the error says so.
 *
 * Credentials come from the proxy URL, percent-decoded as Windows users
 * write them: `http://DOMAIN%5Cuser:password@host:port` (domain `DOMAIN`,
 * user `user`), `user@example.com:password` (a user principal name: sent
 * whole, no domain) or `user:password` (no domain: the proxy's own, from
 * its challenge).
 */

export type ProxyAuthScheme = 'basic' | 'ntlm' | 'negotiate'

/** One challenge of a `Proxy-Authenticate` header: its scheme and what follows it. */
export interface AuthChallenge {
  /** as the proxy wrote it, e.g. `NTLM` */
  name: string
  /** lower-case, for comparing */
  scheme: string
  /** a token68 (an NTLM challenge) or auth-params, unparsed */
  rest: string
}

export interface ProxyCredentials {
  /** the NT domain, from `DOMAIN\user`; absent: the proxy's own */
  domain?: string
  user: string
  password: string
}

/** The user, password and domain in a proxy URL; undefined when it has none. */
export function proxyCredentials (proxy: Pick<ProxySpec, 'username' | 'password'>): ProxyCredentials | undefined {
  if (proxy.username == null && proxy.password == null) return undefined
  const name = proxy.username ?? ''
  const slash = name.indexOf('\\')
  if (slash === -1) return { user: name, password: proxy.password ?? '' }
  return { domain: name.slice(0, slash), user: name.slice(slash + 1), password: proxy.password ?? '' }
}

/** The user as logs and errors may show it: `DOMAIN\user`, never the password. */
export function credentialsLabel (creds: ProxyCredentials): string {
  return creds.domain != null ? `${creds.domain}\\${creds.user}` : creds.user
}

/**
 * Every challenge in the `Proxy-Authenticate` headers. A header may hold
 * several (`Basic realm="x", NTLM`); a comma-separated piece that is an
 * auth-param (`name=value`) belongs to the challenge before it.
 */
export function parseChallenges (values: readonly string[]): AuthChallenge[] {
  const out: AuthChallenge[] = []
  for (const value of values) {
    for (const piece of splitOutsideQuotes(value)) {
      const m = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s+(.*))?$/.exec(piece)
      if (m != null) {
        out.push({ name: m[1], scheme: m[1].toLowerCase(), rest: (m[2] ?? '').trim() })
      } else if (out.length > 0) {
        const last = out[out.length - 1]
        last.rest = last.rest === '' ? piece : `${last.rest}, ${piece}`
      }
    }
  }
  return out
}

function splitOutsideQuotes (value: string): string[] {
  const pieces: string[] = []
  let current = ''
  let quoted = false
  for (let i = 0; i < value.length; i++) {
    const c = value[i]
    if (c === '"' && value[i - 1] !== '\\') quoted = !quoted
    if (c === ',' && !quoted) {
      pieces.push(current.trim())
      current = ''
    } else {
      current += c
    }
  }
  pieces.push(current.trim())
  return pieces.filter(p => p !== '')
}

/**
 * The scheme to answer with, among those offered; undefined when none is one we can do.
 *
 * Basic first when the proxy offers it: the proxy chose to accept it, it costs
 * one round on any connection (NTLM needs three on one kept-alive connection,
 * which load balancers in front of proxies break), and after the first time it
 * goes with the first CONNECT. Then NTLM, then Negotiate (NTLM inside SPNEGO:
 * the same exchange with a wrapper, and refused by proxies that want Kerberos).
 */
export function chooseScheme (offered: readonly AuthChallenge[]): ProxyAuthScheme | undefined {
  for (const scheme of ['basic', 'ntlm', 'negotiate'] as const) {
    if (offered.some(c => c.scheme === scheme)) return scheme
  }
  return undefined
}

/** The `Proxy-Authorization` value for Basic. */
export function basicAuthorization (creds: ProxyCredentials): string {
  const user = creds.domain != null ? `${creds.domain}\\${creds.user}` : creds.user
  return `Basic ${Buffer.from(`${user}:${creds.password}`).toString('base64')}`
}

interface NtlmType2 {
  flags: number
  version: 1 | 2
  targetName: string
  targetInfo?: { parsed: Record<string, string>, buffer: Buffer }
}

/** The part of @ewsjs/ntlm-client we use (it ships no types). */
interface NtlmClient {
  createType1Message: (workstation: string, target: string) => string
  decodeType2Message: (message: string) => NtlmType2
  createType3Message: (type2: NtlmType2, username: string, password: string, workstation: string, target?: string) => string
}

let ntlmClient: NtlmClient | undefined

/**
 * @ewsjs/ntlm-client (a CommonJS package without types, typed by the interface
 * above), loaded at the first NTLM exchange rather than in every daemon, most
 * of which never meet a proxy that asks for NTLM.
 */
function ntlm (): NtlmClient {
  ntlmClient ??= createRequire(import.meta.url)('@ewsjs/ntlm-client') as NtlmClient
  return ntlmClient
}

/**
 * Our workstation name in NTLM messages: empty, so the proxy's logs get no
 * host name it did not need (NTLM servers accept an empty one).
 */
const WORKSTATION = ''

function withoutScheme (message: string): Buffer {
  return Buffer.from(message.replace(/^NTLM /, ''), 'base64')
}

/** NTLM type 1 (negotiate) for the domain of the credentials. */
export function ntlmType1 (creds: ProxyCredentials): Buffer {
  return withoutScheme(ntlm().createType1Message(WORKSTATION, creds.domain ?? ''))
}

/**
 * NTLM type 3 (authenticate) answering a type 2 challenge. Always NTLMv2:
 * the library would fall back to the LM and NTLMv1 responses when the
 * challenge lacks the NTLM2 flag, and those let whoever sent the challenge
 * (any proxy on the path) recover the password offline. A challenge without
 * target info gets an empty one, which NTLMv2 allows.
 */
export function ntlmType3 (type2: Buffer, creds: ProxyCredentials): Buffer {
  const decoded = ntlm().decodeType2Message(withValidBuffers(type2).toString('base64'))
  decoded.version = 2
  decoded.targetInfo ??= { parsed: {}, buffer: Buffer.alloc(0) }
  return withoutScheme(ntlm().createType3Message(decoded, creds.user, creds.password, WORKSTATION, creds.domain))
}

/** NTLMSSP_NEGOTIATE_TARGET_INFO: the type 2 carries a target info block */
const TARGET_INFO_FLAG = 1 << 23

/**
 * A type 2 whose optional fields point outside the message, with those fields
 * emptied: squid's ntlm_fake_auth (the lab's helper) leaves the target name's
 * offset uninitialised. Neither field is needed for the answer (the target
 * name only as a default domain, the target info only inside the NTLMv2
 * blob, where an empty one is valid), so a challenge we can answer correctly
 * is not refused for them.
 */
function withValidBuffers (type2: Buffer): Buffer {
  const out = Buffer.from(type2)
  const outside = (at: number): boolean => out.length < at + 8 || out.readUInt32LE(at + 4) + out.readUInt16LE(at) > out.length || (out.readUInt16LE(at) > 0 && out.readUInt32LE(at + 4) < 32)
  if (out.length >= 20 && outside(12)) out.fill(0, 12, 20)
  if (out.length >= 24 && (out.readUInt32LE(20) & TARGET_INFO_FLAG) !== 0 && outside(40)) {
    out.writeUInt32LE((out.readUInt32LE(20) & ~TARGET_INFO_FLAG) >>> 0, 20)
  }
  return out
}

/** The `Proxy-Authorization` value opening an NTLM or Negotiate exchange. */
export function firstAuthorization (scheme: 'ntlm' | 'negotiate', creds: ProxyCredentials): string {
  const type1 = ntlmType1(creds)
  return scheme === 'ntlm' ? `NTLM ${type1.toString('base64')}` : `Negotiate ${spnegoInit(type1).toString('base64')}`
}

/**
 * The `Proxy-Authorization` value answering the challenge in the 407
 * (`NTLM <type 2>` or `Negotiate <NegTokenResp>`). Throws when there is no
 * challenge for the scheme or it cannot be read.
 */
export function answerAuthorization (scheme: 'ntlm' | 'negotiate', challenges: readonly AuthChallenge[], creds: ProxyCredentials): string {
  const challenge = challenges.find(c => c.scheme === scheme && c.rest !== '')
  if (challenge == null) throw new Error(`the 407 after our ${scheme === 'ntlm' ? 'NTLM' : 'Negotiate'} type 1 carries no challenge`)
  const token = Buffer.from(challenge.rest.split(/[\s,]/)[0], 'base64')
  if (scheme === 'ntlm') return `NTLM ${ntlmType3(token, creds).toString('base64')}`
  return `Negotiate ${spnegoResponse(ntlmType3(spnegoResponseToken(token), creds)).toString('base64')}`
}

export type ProxyAuthOutcome = ProxyAuthView['last']

/**
 * What each proxy asked for and how it went, for `status` and the doctor's
 * `proxy-auth` check; and whether a proxy offered Basic, so that later
 * CONNECTs to it send Basic at once instead of waiting for a 407 (a password
 * goes in Basic only to a proxy that offered Basic).
 */
export class ProxyAuthMemory {
  private readonly views = new Map<string, ProxyAuthView>()
  private readonly basic = new Set<string>()

  private key (proxy: ProxySpec): string {
    return `${proxy.kind}|${proxy.host}|${proxy.port}|${proxy.username ?? ''}`
  }

  /** The proxy offered Basic before: send it with the first CONNECT. */
  offersBasic (proxy: ProxySpec): boolean {
    return this.basic.has(this.key(proxy))
  }

  record (proxy: ProxySpec, outcome: ProxyAuthOutcome, facts: { offered: readonly AuthChallenge[], scheme?: ProxyAuthScheme, code?: string, detail?: string }): void {
    const key = this.key(proxy)
    if (facts.offered.some(c => c.scheme === 'basic')) this.basic.add(key)
    const before = this.views.get(key)
    const passed = (before?.passed ?? 0) + (outcome === 'passed' ? 1 : 0)
    const view: ProxyAuthView = {
      offered: facts.offered.length > 0 ? facts.offered.map(c => c.name) : before?.offered ?? [],
      passed,
      refused: (before?.refused ?? 0) + (outcome === 'passed' ? 0 : 1),
      last: outcome,
      at: new Date().toISOString()
    }
    // once it passed, the scheme shown is the one that passed
    const scheme = outcome === 'passed' || before?.passed == null || before.passed === 0 ? facts.scheme : before.scheme
    if (scheme != null) view.scheme = scheme
    if (facts.code != null) view.code = facts.code
    if (facts.detail != null) view.detail = facts.detail
    this.views.set(key, view)
  }

  view (proxy: ProxySpec): ProxyAuthView | undefined {
    const v = this.views.get(this.key(proxy))
    return v != null ? { ...v, offered: [...v.offered] } : undefined
  }
}
