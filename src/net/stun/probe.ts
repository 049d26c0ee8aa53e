import { createSocket, type Socket } from 'node:dgram'
import { isIPv4 } from 'node:net'
import { networkInterfaces } from 'node:os'
import { decodeStun, encodeBindingRequest, type ChangeRequest, type StunEndpoint } from './codec.ts'
import { classifyNat, type NatClassification, type StunObservation, type StunRecording } from './classify.ts'
import type { AbortOptions } from '@libp2p/interface'

/**
 * The donor's STUN probe: real UDP Binding requests to the relays' STUN
 * responders, recorded as data for classify.ts. Bounded: each request is
 * sent at most `attempts` times (RFC 5389 §7.2.1 retransmission, shortened:
 * a relay is one round trip away and we would rather answer fast), and the
 * whole probe takes at most about 2 × `timeoutMs`.
 */

export interface StunServer {
  /** the relay's IP (the same as the address the donor reached it on) */
  address: string
  /** its STUN ports, primary first (usually 3478, 3479) */
  ports: readonly number[]
}

export interface StunProbeOptions extends AbortOptions {
  /** wait for answers to one round of requests @default 1500 */
  timeoutMs?: number
  /** sends per request @default 3 */
  attempts?: number
  /** this host's IPs; default: every interface address */
  localAddresses?: string[]
}

const MAX_SERVERS = 2

/** Every IP address of this host's interfaces. */
export function localAddresses (): string[] {
  return Object.values(networkInterfaces()).flatMap(list => (list ?? []).map(i => i.address))
}

interface Pending {
  obs: StunObservation
  transactionId: Buffer
  bytes: Buffer
}

async function openSocket (): Promise<Socket> {
  const socket = createSocket('udp4')
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(0, () => { socket.off('error', reject); resolve() })
  })
  return socket
}

/**
 * Sends each request from `socket` (retransmitting) and records the answers,
 * matched by transaction ID, until all are answered or the time is up.
 */
async function exchange (socket: Socket, requests: Array<{ obs: StunObservation, change?: ChangeRequest }>, timeoutMs: number, attempts: number, signal?: AbortSignal): Promise<void> {
  const pending: Pending[] = requests.map(r => {
    const { bytes, transactionId } = encodeBindingRequest({ change: r.change })
    return { obs: r.obs, transactionId, bytes }
  })
  await new Promise<void>((resolve) => {
    const timers: Array<ReturnType<typeof setTimeout>> = []
    const finish = (): void => {
      for (const t of timers) clearTimeout(t)
      socket.off('message', onMessage)
      signal?.removeEventListener('abort', finish)
      resolve()
    }
    const onMessage = (msg: Buffer, rinfo: { address: string, port: number }): void => {
      let res
      try {
        res = decodeStun(msg)
      } catch {
        // not STUN (or not for us): a stray datagram on an ephemeral port changes nothing
        return
      }
      const p = pending.find(x => x.transactionId.equals(res.transactionId))
      if (p == null || p.obs.answer != null) return
      const from = { address: rinfo.address, port: rinfo.port }
      if (res.kind === 'binding-success' && res.mapped != null) {
        p.obs.answer = { mapped: res.mapped, from, ...(res.responseOrigin != null ? { responseOrigin: res.responseOrigin } : {}), ...(res.otherAddress != null ? { otherAddress: res.otherAddress } : {}) }
      } else if (res.kind === 'binding-error') {
        p.obs.answer = { error: res.error ?? { code: 0, reason: 'error response without ERROR-CODE' }, from }
      } else {
        return
      }
      if (pending.every(x => x.obs.answer != null)) finish()
    }
    socket.on('message', onMessage)
    signal?.addEventListener('abort', finish, { once: true })
    // retransmit at 0, 1/4 and 3/4 of the window (RFC 5389's doubling RTO, compressed)
    const at = [0, 0.25, 0.5, 0.75].slice(0, Math.max(1, attempts)).map(f => Math.round(f * timeoutMs))
    for (const delay of at) {
      timers.push(setTimeout(() => {
        for (const p of pending) {
          if (p.obs.answer != null) continue
          // a send error (no route, EPERM from a local firewall) leaves the request unanswered;
          // it is kept on the observation so the verdict can name it
          socket.send(p.bytes, p.obs.server.port, p.obs.server.address, (err) => {
            if (err != null) p.obs.sendError ??= `${(err as NodeJS.ErrnoException).code ?? err.message}`
          })
        }
      }, delay))
    }
    timers.push(setTimeout(finish, timeoutMs))
  })
}

/** Runs the mapping and filtering tests against up to two relays and returns what was seen. */
export async function recordStunProbe (servers: readonly StunServer[], options: StunProbeOptions = {}): Promise<StunRecording> {
  const timeoutMs = options.timeoutMs ?? 1500
  const attempts = options.attempts ?? 3
  const usable = servers.filter(s => isIPv4(s.address) && s.ports.length > 0).slice(0, MAX_SERVERS)
  const rec: StunRecording = { localAddresses: options.localAddresses ?? localAddresses(), observations: [] }
  if (usable.length === 0) return rec

  // mapping: one socket, every endpoint
  const mapping = await openSocket()
  try {
    const localPort = mapping.address().port
    const requests = usable.flatMap(s => s.ports.slice(0, 2).map(port => ({
      obs: { socket: 'mapping' as const, localPort, server: { address: s.address, port } }
    })))
    rec.observations.push(...requests.map(r => r.obs))
    await exchange(mapping, requests, timeoutMs, attempts, options.signal)
  } finally {
    mapping.close()
  }
  options.signal?.throwIfAborted()

  // filtering: a fresh socket that talks only to the primary endpoint of a relay that answered
  const primaryObs = rec.observations.find(o => o.answer != null && 'mapped' in o.answer)
  if (primaryObs == null) return rec
  const server = usable.find(s => s.address === primaryObs.server.address) as StunServer
  const primary: StunEndpoint = { address: server.address, port: server.ports[0] }
  const answer = primaryObs.answer as { otherAddress?: StunEndpoint }
  const twoIps = answer.otherAddress != null && answer.otherAddress.address !== server.address
  const filtering = await openSocket()
  try {
    const localPort = filtering.address().port
    const requests: Array<{ obs: StunObservation, change?: ChangeRequest }> = [{ obs: { socket: 'filtering', localPort, server: primary } }]
    if (server.ports.length > 1) {
      const change = { changeIp: false, changePort: true }
      requests.push({ obs: { socket: 'filtering', localPort, server: primary, change }, change })
    }
    if (twoIps) {
      const change = { changeIp: true, changePort: true }
      requests.push({ obs: { socket: 'filtering', localPort, server: primary, change }, change })
    }
    rec.observations.push(...requests.map(r => r.obs))
    await exchange(filtering, requests, timeoutMs, attempts, options.signal)
  } finally {
    filtering.close()
  }
  return rec
}

export async function probeNat (servers: readonly StunServer[], options: StunProbeOptions = {}): Promise<NatClassification & { recording: StunRecording, durationMs: number }> {
  const started = Date.now()
  const recording = await recordStunProbe(servers, options)
  return { ...classifyNat(recording), recording, durationMs: Date.now() - started }
}
