import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { describeDialError, initialPhase, phaseForProgress, type DialErrorContext } from '../../src/net/dial-error.ts'

const PEER = '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'

/** A Node socket error as `net.connect` rejects with, wrapped the way js-libp2p's tcp transport words it. */
function socketError (code: string, message: string): Error {
  return Object.assign(new Error(message), { code, errno: -111, syscall: 'connect' })
}

/** A named libp2p error (js-libp2p sets `name` on its error classes). */
function namedError (name: string, message: string): Error {
  const err = new Error(message)
  err.name = name
  return err
}

/** The shape a WebSocket `ErrorEvent` has when it reaches the dialler: not an Error, empty message. */
function errorEventLike (): unknown {
  return { type: 'error', message: '', error: new TypeError('') }
}

function ctx (over: Partial<DialErrorContext> = {}): DialErrorContext {
  return { phase: 'tcp-connect', transport: 'tcp', elapsedMs: 1234, ...over }
}

describe('describeDialError', () => {
  it('a bare DOM Event thrown by a dial is named, never "[object Event]"', () => {
    const abort = describeDialError(new Event('abort'), ctx({ phase: 'reservation', transport: 'quic' }))
    assert.doesNotMatch(abort.cause, /object Event/)
    assert.match(abort.cause, /^aborted: an abort signal under the dial fired with no reason .* during reservation$/)
    assert.equal(abort.code, 'EVENT_ABORT')
    assert.equal(abort.phase, 'reservation')
    const close = describeDialError(new Event('close'), ctx({ phase: 'muxer' }))
    assert.match(close.cause, /connection or stream under the dial closed during muxer/)
    const custom = describeDialError(new CustomEvent('stall', { detail: 'no bytes for 5 s' }), ctx({ phase: 'noise' }))
    assert.match(custom.cause, /a "stall" event with no error attached \(no bytes for 5 s\) during noise/)
  })

  it('reports ECONNREFUSED as a refused connection at tcp-connect', () => {
    const err = socketError('ECONNREFUSED', 'connection error 127.0.0.1:4999: connect ECONNREFUSED 127.0.0.1:4999')
    const d = describeDialError(err, ctx({ phase: 'dns' }))
    assert.equal(d.code, 'ECONNREFUSED')
    assert.equal(d.phase, 'tcp-connect')
    assert.match(d.cause, /connection refused/)
  })

  it('reports EHOSTUNREACH as an unreachable host at tcp-connect', () => {
    const err = socketError('EHOSTUNREACH', 'connect EHOSTUNREACH 127.0.0.1:4999')
    const d = describeDialError(err, ctx())
    assert.equal(d.code, 'EHOSTUNREACH')
    assert.equal(d.phase, 'tcp-connect')
    assert.match(d.cause, /host unreachable/)
  })

  it('reports ENOTFOUND as a DNS failure', () => {
    const d = describeDialError(socketError('ENOTFOUND', 'getaddrinfo ENOTFOUND relay.invalid'), ctx({ phase: 'dns' }))
    assert.equal(d.code, 'ENOTFOUND')
    assert.equal(d.phase, 'dns')
  })

  it('keeps the reached phase for a reset after the TCP handshake', () => {
    const d = describeDialError(socketError('ECONNRESET', 'read ECONNRESET'), ctx({ phase: 'noise' }))
    assert.equal(d.code, 'ECONNRESET')
    assert.equal(d.phase, 'noise')
  })

  it('reports a TimeoutError at noise as an unanswered handshake with the seconds it waited', () => {
    const err = new DOMException('The operation timed out', 'TimeoutError')
    const d = describeDialError(err, ctx({ phase: 'noise', elapsedMs: 10_000, timedOut: true }))
    assert.equal(d.code, 'TIMEOUT')
    assert.equal(d.phase, 'noise')
    assert.match(d.cause, /handshake/)
    assert.ok(d.cause.includes('10.0 s'), d.cause)
    assert.match(d.cause, /TCP connected but the libp2p handshake got no answer.*protocol-inspecting firewall/)
  })

  it('reports an AbortError at tcp-connect over tcp as an unanswered TCP connect', () => {
    const err = new DOMException('This operation was aborted', 'AbortError')
    const d = describeDialError(err, ctx({ phase: 'tcp-connect', transport: 'tcp', elapsedMs: 5000 }))
    assert.equal(d.code, 'TIMEOUT')
    assert.equal(d.phase, 'tcp-connect')
    assert.match(d.cause, /TCP connect/)
    assert.ok(d.cause.includes('5.0 s'), d.cause)
  })

  it('reports a stall at tcp-connect over wss as an unopened WebSocket', () => {
    const err = new DOMException('The operation timed out', 'TimeoutError')
    const d = describeDialError(err, ctx({ phase: 'tcp-connect', transport: 'wss', timedOut: true }))
    assert.match(d.cause, /WebSocket/)
  })

  it('reports a QUIC timeout at tls as a missing handshake reply mentioning UDP', () => {
    const err = new DOMException('The operation timed out', 'TimeoutError')
    const d = describeDialError(err, ctx({ phase: 'tls', transport: 'quic', elapsedMs: 7500, timedOut: true }))
    assert.equal(d.code, 'TIMEOUT')
    assert.equal(d.phase, 'tls')
    assert.match(d.cause, /QUIC/)
    assert.match(d.cause, /UDP/)
    assert.ok(d.cause.includes('7.5 s'), d.cause)
  })

  it('reports an unnamed error as a timeout when our own timeout fired', () => {
    const d = describeDialError(new Error('aborted'), ctx({ phase: 'muxer', timedOut: true }))
    assert.equal(d.code, 'TIMEOUT')
    assert.match(d.cause, /multiplexer/)
  })

  it('lists every cause of an AggregateError and counts the failed addresses', () => {
    const refused = socketError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:4999')
    const err = new AggregateError([refused, errorEventLike()], 'All multiaddr dials failed')
    const d = describeDialError(err, ctx({ transport: 'wss' }))
    assert.match(d.cause, /all 2 address\(es\) failed/)
    assert.match(d.cause, /connection refused/)
    assert.match(d.cause, /WebSocket failed/)
    assert.equal(d.code, 'ECONNREFUSED')
    assert.equal(d.phase, 'tcp-connect')
  })

  it('states a repeated cause of an AggregateError once', () => {
    const a = socketError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:4999')
    const b = socketError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5000')
    const d = describeDialError(new AggregateError([a, b], 'All multiaddr dials failed'), ctx())
    assert.match(d.cause, /all 2 address\(es\) failed/)
    assert.equal(d.cause.split('connection refused').length - 1, 1, d.cause)
  })

  it('reports a WebSocket ErrorEvent that is not an Error as WEBSOCKET_ERROR with a non-empty cause', () => {
    const ev = errorEventLike()
    assert.ok(!(ev instanceof Error))
    const d = describeDialError(ev, ctx({ phase: 'tcp-connect', transport: 'wss' }))
    assert.equal(d.code, 'WEBSOCKET_ERROR')
    assert.equal(d.phase, 'ws-upgrade')
    assert.notEqual(d.cause.trim(), '')
    assert.match(d.cause, /WebSocket failed/)
    assert.match(d.cause, /TLS certificate/)
  })

  it('carries the inner message of a WebSocket ErrorEvent when it has one', () => {
    const ev = { type: 'error', message: '', error: new Error('Unexpected server response: 502') }
    const d = describeDialError(ev, ctx({ transport: 'ws' }))
    assert.equal(d.code, 'WEBSOCKET_ERROR')
    assert.ok(d.cause.includes('Unexpected server response: 502'), d.cause)
  })

  it('reports a WebSocket ErrorEvent as a timeout when our timeout fired', () => {
    const d = describeDialError(errorEventLike(), ctx({ phase: 'ws-upgrade', transport: 'wss', timedOut: true }))
    assert.equal(d.code, 'TIMEOUT')
    assert.equal(d.phase, 'ws-upgrade')
  })

  it('finds an untrusted certificate code in the cause chain and reports TLS_UNTRUSTED at tls', () => {
    const inner = Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })
    const err = new Error('dial failed', { cause: new Error('socket hang up', { cause: inner }) })
    const d = describeDialError(err, ctx({ phase: 'tcp-connect', transport: 'wss' }))
    assert.equal(d.code, 'TLS_UNTRUSTED')
    assert.equal(d.phase, 'tls')
    assert.match(d.cause, /not trusted/)
  })

  it('reports a Noise identity mismatch as PEER_ID_MISMATCH at noise', () => {
    const err = namedError('EncryptionFailedError', `Payload identity key X does not match expected remote identity key Y`)
    const d = describeDialError(err, ctx({ phase: 'noise' }))
    assert.equal(d.code, 'PEER_ID_MISMATCH')
    assert.equal(d.phase, 'noise')
    assert.ok(d.cause.includes('does not match expected remote identity key Y'), d.cause)
  })

  it('reports any other EncryptionFailedError as NOISE_FAILED at noise', () => {
    const d = describeDialError(namedError('EncryptionFailedError', 'bad handshake payload'), ctx({ phase: 'tcp-connect' }))
    assert.equal(d.code, 'NOISE_FAILED')
    assert.equal(d.phase, 'noise')
  })

  it('reports UnsupportedProtocolError at phase protocol', () => {
    const d = describeDialError(namedError('UnsupportedProtocolError', 'protocol selection failed'), ctx({ phase: 'muxer' }))
    assert.equal(d.code, 'UNSUPPORTED_PROTOCOL')
    assert.equal(d.phase, 'protocol')
  })

  it('reports a message carrying NO_RESERVATION as NO_RESERVATION', () => {
    const err = namedError('InvalidMessageError', `HOP request failed with code "NO_RESERVATION" for ${PEER}`)
    const d = describeDialError(err, ctx({ phase: 'protocol', transport: 'circuit' }))
    assert.equal(d.code, 'NO_RESERVATION')
    assert.equal(d.phase, 'protocol')
    assert.match(d.cause, /no reservation/)
  })

  it('reports a refused reservation at phase reservation', () => {
    const d = describeDialError(new Error('reservation failed with status RESERVATION_REFUSED'), ctx({ phase: 'protocol' }))
    assert.equal(d.code, 'RESERVATION_REFUSED')
    assert.equal(d.phase, 'reservation')
  })

  it('reports a cancelled dial as CANCELLED whatever the error', () => {
    const err = socketError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:4999')
    const d = describeDialError(err, ctx({ phase: 'noise', cancelled: true }))
    assert.equal(d.code, 'CANCELLED')
    assert.equal(d.phase, 'noise')
    assert.match(d.cause, /cancelled/)
    // what the attempt saw before it was cancelled: TCP up, handshake unanswered
    assert.match(d.cause, /TCP connected but the libp2p handshake had no answer yet/)
  })

  it('falls back to the error name and message for an unknown error', () => {
    const d = describeDialError(namedError('WeirdError', 'something odd'), ctx({ phase: 'muxer' }))
    assert.equal(d.code, 'WeirdError')
    assert.equal(d.phase, 'muxer')
    assert.equal(d.cause, 'WeirdError: something odd')
  })

  it('describes a thrown non-object without losing it', () => {
    const d = describeDialError('plain string failure', ctx())
    assert.equal(d.code, 'UNKNOWN')
    assert.equal(d.cause, 'plain string failure')
  })
})

describe('phaseForProgress', () => {
  it('moves to noise when the upgrader starts encrypting', () => {
    assert.equal(phaseForProgress('upgrader:encrypt-outbound-connection', 'tcp', 'tcp-connect'), 'noise')
  })

  it('moves to muxer when the upgrader starts multiplexing', () => {
    assert.equal(phaseForProgress('upgrader:multiplex-outbound-connection', 'tcp', 'noise'), 'muxer')
  })

  it('moves to tcp-connect when the TCP transport opens a connection', () => {
    assert.equal(phaseForProgress('tcp:open-connection', 'tcp', 'dns'), 'tcp-connect')
    assert.equal(phaseForProgress('websockets:open-connection', 'wss', 'dns'), 'tcp-connect')
  })

  it('moves to protocol once the connection is open', () => {
    assert.equal(phaseForProgress('connection:opened', 'tcp', 'muxer'), 'protocol')
  })

  it('leaves dns once addresses are calculated, to tls for quic and tcp-connect otherwise', () => {
    assert.equal(phaseForProgress('dial-queue:calculated-addresses', 'quic', 'dns'), 'tls')
    assert.equal(phaseForProgress('dial-queue:calculated-addresses', 'tcp', 'dns'), 'tcp-connect')
    assert.equal(phaseForProgress('dial-queue:calculated-addresses', 'tcp', 'noise'), 'noise')
  })

  it('keeps the current phase for an event it does not know', () => {
    assert.equal(phaseForProgress('something:else', 'tcp', 'muxer'), 'muxer')
  })
})

describe('initialPhase', () => {
  it('starts a /dns4/ address at dns', () => {
    assert.equal(initialPhase(`/dns4/relay.example.org/tcp/4001/p2p/${PEER}`, 'tcp'), 'dns')
    assert.equal(initialPhase('/dnsaddr/bootstrap.example.org', 'unknown'), 'dns')
  })

  it('starts a quic address at tls', () => {
    assert.equal(initialPhase(`/ip4/127.0.0.1/udp/4001/quic-v1/p2p/${PEER}`, 'quic'), 'tls')
  })

  it('starts a tcp address at tcp-connect', () => {
    assert.equal(initialPhase(`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`, 'tcp'), 'tcp-connect')
  })
})
