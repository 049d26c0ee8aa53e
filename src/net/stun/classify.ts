import { endpointText, type ChangeRequest, type StunEndpoint } from './codec.ts'
import type { NatFiltering, NatReport } from '../../core/types.ts'

/**
 * NAT behaviour from recorded STUN answers (RFC 5780 §4.3 mapping, §4.4
 * filtering). Pure: the probe (probe.ts) records, this decides, and tests
 * feed it recordings.
 *
 * Mapping: requests from ONE socket to several server endpoints; the NAT
 * maps our socket to the same public address for every destination
 * (endpoint-independent), per destination IP (address-dependent), or per
 * destination IP and port (address-and-port-dependent, "symmetric"). Our
 * relays have one IP and two STUN ports, so one relay tells port dependence
 * (its two ports); a second relay (another IP) tells address dependence.
 * Filtering: from a FRESH socket that has only talked to the primary
 * endpoint, ask the server to answer from its other port (and other IP when
 * it has one): an answer that gets through means the NAT does not filter on
 * that. The socket must be fresh, or the mapping requests have already
 * opened the NAT to the other port (seen in the namespace lab).
 */

export type StunAnswer =
  | { mapped: StunEndpoint, responseOrigin?: StunEndpoint, otherAddress?: StunEndpoint, from?: StunEndpoint }
  | { error: { code: number, reason: string }, from?: StunEndpoint }

export interface StunObservation {
  /** which local socket sent it: 'mapping' (shared by all mapping requests) or 'filtering' */
  socket: 'mapping' | 'filtering'
  /** the socket's bound port */
  localPort: number
  /** where the request went */
  server: StunEndpoint
  change?: ChangeRequest
  /** absent: no answer within the probe's timeout (after retransmissions) */
  answer?: StunAnswer
  /** the local send failed (e.g. ENETUNREACH, EPERM from a local firewall) */
  sendError?: string
}

export interface StunRecording {
  /** this host's own IP addresses (to tell "no NAT": the mapped address is one of ours) */
  localAddresses: string[]
  observations: StunObservation[]
}

/** The verdict; `portDelta` only for an address-and-port-dependent mapping whose ports came in sequence (see sequentialStep). */
export type NatClassification = Pick<NatReport, 'mapping' | 'filtering' | 'udp' | 'reason' | 'mappedAddress' | 'portDelta'>

/** steps above this between two consecutive flows' ports read as random allocation, not a sequence */
export const MAX_PREDICTABLE_STEP = 8

const same = (a: StunEndpoint, b: StunEndpoint): boolean => a.address === b.address && a.port === b.port

function mappedOf (o: StunObservation): StunEndpoint | undefined {
  return o.answer != null && 'mapped' in o.answer ? o.answer.mapped : undefined
}

export function classifyNat (rec: StunRecording): NatClassification {
  if (rec.observations.length === 0) {
    return { mapping: 'unknown', filtering: 'unknown', udp: 'unknown', reason: 'no STUN server to ask: not run' }
  }
  const answered = rec.observations.filter(o => o.answer != null)
  if (answered.length === 0) {
    const servers = [...new Set(rec.observations.map(o => endpointText(o.server)))]
    const sendErrors = [...new Set(rec.observations.map(o => o.sendError).filter(e => e != null))]
    return {
      mapping: 'no-udp',
      filtering: 'unknown',
      udp: 'no',
      reason: sendErrors.length > 0
        ? `UDP to ${servers.join(', ')} could not be sent (${sendErrors.join(', ')}): this host or its network refuses UDP out`
        : `no answer over UDP from ${servers.join(', ')}: UDP is blocked on the way out (or back)`
    }
  }
  const plain = rec.observations.filter(o => o.socket === 'mapping' && o.change == null)
  const mappings = plain.filter(o => mappedOf(o) != null)
  if (mappings.length === 0) {
    return { mapping: 'unknown', filtering: 'unknown', udp: 'yes', reason: 'STUN answered, but not a single plain Binding request got a mapped address' }
  }
  const first = mappedOf(mappings[0]) as StunEndpoint
  const mappedAddress = endpointText(first)
  const local = new Set(rec.localAddresses)
  const filtering = classifyFiltering(rec)

  if (mappings.every(o => { const m = mappedOf(o) as StunEndpoint; return m.port === o.localPort && local.has(m.address) })) {
    return { mapping: 'none', filtering: filtering.value, udp: 'yes', mappedAddress, reason: `no NAT: the relays see our own address ${mappedAddress}${filtering.reason !== '' ? `; ${filtering.reason}` : ''}` }
  }

  // mapping: compare pairs from the one socket
  let portPairs = 0
  let ipPairs = 0
  let portDiffers: [StunObservation, StunObservation] | undefined
  let ipDiffers: [StunObservation, StunObservation] | undefined
  for (let i = 0; i < mappings.length; i++) {
    for (let j = i + 1; j < mappings.length; j++) {
      const a = mappings[i]
      const b = mappings[j]
      const differs = !same(mappedOf(a) as StunEndpoint, mappedOf(b) as StunEndpoint)
      if (a.server.address === b.server.address) {
        if (a.server.port === b.server.port) continue
        portPairs++
        if (differs) portDiffers ??= [a, b]
      } else {
        ipPairs++
        if (differs) ipDiffers ??= [a, b]
      }
    }
  }
  const pairText = (p: [StunObservation, StunObservation]): string =>
    `${endpointText(p[0].server)} saw ${endpointText(mappedOf(p[0]) as StunEndpoint)}, ${endpointText(p[1].server)} saw ${endpointText(mappedOf(p[1]) as StunEndpoint)}`
  const withFiltering = (text: string): string => filtering.reason !== '' ? `${text}; ${filtering.reason}` : text

  if (portDiffers != null) {
    const portDelta = sequentialStep(mappings.map(o => (mappedOf(o) as StunEndpoint).port))
    const sequence = portDelta != null ? `; ports in sequence, step ${portDelta}: the next flows' ports are predictable` : ''
    return { mapping: 'address-and-port-dependent', filtering: filtering.value, udp: 'yes', mappedAddress, ...(portDelta != null ? { portDelta } : {}), reason: withFiltering(`symmetric NAT: a new mapping for each destination port (${pairText(portDiffers)})${sequence}`) }
  }
  if (ipDiffers != null) {
    const note = portPairs > 0 ? '' : '; port dependence not measured (no relay answered on two ports)'
    return { mapping: 'address-dependent', filtering: filtering.value, udp: 'yes', mappedAddress, reason: withFiltering(`a new mapping for each destination address (${pairText(ipDiffers)})${note}`) }
  }
  if (portPairs + ipPairs === 0) {
    return { mapping: 'unknown', filtering: filtering.value, udp: 'yes', mappedAddress, reason: withFiltering(`behind a NAT (seen as ${mappedAddress}), but only one STUN endpoint answered: nothing to compare the mapping with`) }
  }
  const scope = ipPairs > 0 ? `${portPairs > 0 ? 'ports and ' : ''}addresses` : 'ports of one relay (one IP: address dependence not measured)'
  return { mapping: 'endpoint-independent', filtering: filtering.value, udp: 'yes', mappedAddress, reason: withFiltering(`behind a NAT with one mapping ${mappedAddress} for every destination (compared across ${scope})`) }
}

/**
 * The step of a NAT that hands out ports in sequence: the mapped ports of
 * consecutive requests (in the order they were sent, each a new flow) all
 * grow by 1..MAX_PREDICTABLE_STEP (another flow of the same site may take a
 * port in between); the smallest step. Two answers (one relay's two
 * ports, the probe's first run) suffice: a NAT choosing at random from
 * tens of thousands of ports lands 1..MAX_PREDICTABLE_STEP above the last
 * one about once in ten thousand, and a wrong guess costs one WebRTC
 * attempt that fails. Undefined for one answer or any other step.
 */
export function sequentialStep (ports: readonly number[]): number | undefined {
  if (ports.length < 2) return undefined
  const steps = ports.slice(1).map((p, i) => p - ports[i])
  if (steps.some(d => d < 1 || d > MAX_PREDICTABLE_STEP)) return undefined
  return Math.min(...steps)
}

function classifyFiltering (rec: StunRecording): { value: NatFiltering, reason: string } {
  const obs = rec.observations.filter(o => o.socket === 'filtering')
  if (obs.length === 0) return { value: 'unknown', reason: '' }
  const control = obs.find(o => o.change == null)
  if (control == null || control.answer == null || !('mapped' in control.answer)) {
    return { value: 'unknown', reason: 'filtering not measured (the control request of the filtering test got no answer)' }
  }
  const both = obs.find(o => o.change?.changeIp === true && o.change.changePort)
  const port = obs.find(o => o.change?.changeIp !== true && o.change?.changePort === true)
  const got = (o: StunObservation | undefined): boolean => o?.answer != null && 'mapped' in o.answer
  const refused = (o: StunObservation | undefined): boolean => o?.answer != null && 'error' in o.answer
  if (got(both)) return { value: 'endpoint-independent', reason: 'endpoint-independent filtering (an answer from another IP and port got in)' }
  if (port == null || refused(port)) return { value: 'unknown', reason: 'filtering not measured (the relay cannot answer from another port)' }
  if (got(port)) {
    if (both != null && !refused(both)) return { value: 'address-dependent', reason: 'address-dependent filtering (an answer from another port got in, one from another IP did not)' }
    return { value: 'unknown', reason: 'filtering is not port-dependent; endpoint-independent vs address-dependent needs a STUN server with two IPs' }
  }
  return { value: 'address-and-port-dependent', reason: 'address-and-port-dependent filtering (an answer from another port of the same relay was dropped)' }
}
