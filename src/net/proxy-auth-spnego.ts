/**
 * SPNEGO (RFC 4178) carrying NTLM, for a proxy that offers only `Negotiate`.
 *
 * `Negotiate` is SPNEGO: the client lists the mechanisms it can do and sends
 * the first one's token optimistically. Kerberos proper needs a ticket from
 * the domain's KDC through the system's GSS-API (libkrb5, the native
 * `kerberos` package and a build step), which this daemon does not carry; but
 * SPNEGO can carry NTLM, and Windows proxies (and squid's negotiate_wrapper)
 * accept it. So we offer exactly one mechanism, NTLMSSP, with the NTLM type 1
 * message as its optimistic token, and unwrap the type 2 challenge from the
 * proxy's answer. The encoder and decoder below cover only these three
 * messages (DER, definite lengths), not ASN.1 at large.
 *
 * Not sent: a mechListMIC. With one mechanism offered there is nothing to
 * downgrade, and RFC 4178 §5 lets the acceptor skip it then; a server that
 * insists on one (it can, when NTLM negotiated a MIC) refuses us, and that is
 * reported as PROXY_AUTH_FAILED with the scheme named.
 */

/** 1.3.6.1.5.5.2, the SPNEGO mechanism */
const SPNEGO_OID = Buffer.from([0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02])
/** 1.3.6.1.4.1.311.2.2.10, NTLMSSP */
const NTLMSSP_OID = Buffer.from([0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a])
const NTLM_SIGNATURE = Buffer.from('NTLMSSP\0', 'latin1')

/** The SPNEGO answer is not one we can read, or the proxy rejected the mechanism. */
export class SpnegoError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'SpnegoError'
  }
}

/** A DER tag-length-value with a definite length. */
function tlv (tag: number, value: Buffer): Buffer {
  const n = value.length
  const length = n < 0x80
    ? Buffer.from([n])
    : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff])
  return Buffer.concat([Buffer.from([tag]), length, value])
}

/**
 * The first message: the GSS-API framing ([APPLICATION 0] with the SPNEGO
 * OID), then NegTokenInit ([0]) { mechTypes [0] { NTLMSSP }, mechToken [2] type1 }.
 */
export function spnegoInit (ntlmType1: Buffer): Buffer {
  const mechTypes = tlv(0xa0, tlv(0x30, NTLMSSP_OID))
  const mechToken = tlv(0xa2, tlv(0x04, ntlmType1))
  const negTokenInit = tlv(0xa0, tlv(0x30, Buffer.concat([mechTypes, mechToken])))
  return tlv(0x60, Buffer.concat([SPNEGO_OID, negTokenInit]))
}

/** A later message: NegTokenResp ([1]) { responseToken [2] type3 }. */
export function spnegoResponse (ntlmType3: Buffer): Buffer {
  return tlv(0xa1, tlv(0x30, tlv(0xa2, tlv(0x04, ntlmType3))))
}

interface Element { tag: number, value: Buffer, end: number }

function readElement (buf: Buffer, at: number): Element {
  if (at + 2 > buf.length) throw new SpnegoError('truncated SPNEGO token')
  const tag = buf[at]
  let length = buf[at + 1]
  let start = at + 2
  if (length >= 0x80) {
    const bytes = length & 0x7f
    if (bytes === 0 || bytes > 3 || start + bytes > buf.length) throw new SpnegoError('unsupported length in SPNEGO token')
    length = 0
    for (let i = 0; i < bytes; i++) length = (length << 8) | buf[start + i]
    start += bytes
  }
  if (start + length > buf.length) throw new SpnegoError('truncated SPNEGO token')
  return { tag, value: buf.subarray(start, start + length), end: start + length }
}

/** The context-tagged fields of a SEQUENCE, by tag number. */
function fieldsOf (sequence: Buffer): Map<number, Buffer> {
  const fields = new Map<number, Buffer>()
  for (let at = 0; at < sequence.length;) {
    const e = readElement(sequence, at)
    fields.set(e.tag & 0x1f, e.value)
    at = e.end
  }
  return fields
}

/**
 * The NTLM message inside the proxy's `Negotiate` answer: NegTokenResp's
 * responseToken. A bare NTLM message (some servers answer that way when
 * NTLM came wrapped) is taken as is. Throws when the proxy rejected the
 * mechanism (negState reject) or sent no token.
 */
export function spnegoResponseToken (token: Buffer): Buffer {
  if (token.subarray(0, NTLM_SIGNATURE.length).equals(NTLM_SIGNATURE)) return token
  const outer = readElement(token, 0)
  if (outer.tag !== 0xa1) throw new SpnegoError(`not a NegTokenResp (tag 0x${outer.tag.toString(16)})`)
  const seq = readElement(outer.value, 0)
  if (seq.tag !== 0x30) throw new SpnegoError('NegTokenResp is not a SEQUENCE')
  const fields = fieldsOf(seq.value)
  const state = fields.get(0)
  // negState: 0 accept-completed, 1 accept-incomplete, 2 reject, 3 request-mic
  if (state != null && readElement(state, 0).value[0] === 2) throw new SpnegoError('the proxy rejected NTLM inside Negotiate (negState reject): it wants Kerberos')
  const response = fields.get(2)
  if (response == null) throw new SpnegoError('NegTokenResp carries no responseToken')
  return readElement(response, 0).value
}
