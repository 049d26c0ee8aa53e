/**
 * Field readers for decoded dag-cbor. Every message decoder goes through these,
 * so each rejection names the message and the dotted path of the field and
 * says what was expected and what arrived.
 *
 * Unknown fields are ignored, not rejected: a peer one minor version ahead may
 * add a field, and refusing its whole message would split the mesh by version.
 * Everything we read is checked for type, presence, length and range.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { DAG_CBOR_CODE, parseCid, RAW_CODE, SHA2_256_CODE } from './cid.ts'
import { MalformedMessageError } from './errors.ts'

export type Fields = Record<string, unknown>

/** A view of one decoded map, remembering where it sits in its message. */
export class FieldReader {
  readonly messageType: string
  readonly path: string
  readonly value: Fields

  constructor (messageType: string, value: unknown, path = '') {
    this.messageType = messageType
    this.path = path
    if (!isPlainMap(value)) {
      throw new MalformedMessageError(messageType, path === '' ? '(message)' : path, `must be a map, got ${describe(value)}`)
    }
    this.value = value
  }

  fail (key: string, problem: string): never {
    throw new MalformedMessageError(this.messageType, this.fieldPath(key), problem)
  }

  fieldPath (key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`
  }

  has (key: string): boolean {
    return Object.hasOwn(this.value, key) && this.value[key] !== undefined
  }

  /** A nested map. */
  map (key: string): FieldReader {
    if (!this.has(key)) this.fail(key, 'is missing')
    return new FieldReader(this.messageType, this.value[key], this.fieldPath(key))
  }

  string (key: string, opts: { maxLength: number, minLength?: number, pattern?: RegExp, patternHint?: string }): string {
    const v = this.value[key]
    if (!this.has(key)) this.fail(key, 'is missing')
    if (typeof v !== 'string') this.fail(key, `must be a string, got ${describe(v)}`)
    const min = opts.minLength ?? 1
    if (v.length < min) this.fail(key, min === 1 ? 'must not be empty' : `must be at least ${min} characters, got ${v.length}`)
    if (v.length > opts.maxLength) this.fail(key, `must be at most ${opts.maxLength} characters, got ${v.length}`)
    if (opts.pattern != null && !opts.pattern.test(v)) this.fail(key, `must be ${opts.patternHint ?? `like ${String(opts.pattern)}`}, got ${quote(v)}`)
    return v
  }

  optionalString (key: string, opts: { maxLength: number, minLength?: number }): string | undefined {
    if (!this.has(key) || this.value[key] === null) return undefined
    return this.string(key, { ...opts, minLength: opts.minLength ?? 0 })
  }

  /** One of a fixed list of strings. */
  oneOf<T extends string> (key: string, allowed: readonly T[]): T {
    const v = this.string(key, { maxLength: 64 })
    if (!(allowed as readonly string[]).includes(v)) this.fail(key, `must be one of ${allowed.join(', ')}, got ${quote(v)}`)
    return v as T
  }

  /**
   * An optional field from a list that later versions may extend: absent
   * reads as undefined, a word this version does not know as `unknown` (the
   * peer's message must still decode). Anything but a short string is malformed.
   */
  optionalOneOf<T extends string, U extends T | undefined> (key: string, allowed: readonly T[], unknown: U): T | U | undefined {
    if (!this.has(key) || this.value[key] === null) return undefined
    const v = this.string(key, { maxLength: 64 })
    return (allowed as readonly string[]).includes(v) ? v as T : unknown
  }

  boolean (key: string): boolean {
    const v = this.value[key]
    if (!this.has(key)) this.fail(key, 'is missing')
    if (typeof v !== 'boolean') this.fail(key, `must be a boolean, got ${describe(v)}`)
    return v
  }

  /** A safe integer in [min, max]. dag-cbor decodes integers above 2^53 as bigint: those are out of range. */
  integer (key: string, opts: { min: number, max: number }): number {
    const v = this.value[key]
    if (!this.has(key)) this.fail(key, 'is missing')
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) this.fail(key, `must be an integer, got ${describe(v)}`)
    if (v < opts.min || v > opts.max) this.fail(key, `must be between ${opts.min} and ${opts.max}, got ${v}`)
    return v
  }

  optionalInteger (key: string, opts: { min: number, max: number }): number | undefined {
    if (!this.has(key) || this.value[key] === null) return undefined
    return this.integer(key, opts)
  }

  /** Present and either an integer or null (the receipt's `exitCode`). */
  nullableInteger (key: string, opts: { min: number, max: number }): number | null {
    if (!this.has(key)) this.fail(key, 'is missing')
    if (this.value[key] === null) return null
    return this.integer(key, opts)
  }

  bytes (key: string, opts: { maxBytes: number, minBytes?: number }): Uint8Array {
    const v = this.value[key]
    if (!this.has(key)) this.fail(key, 'is missing')
    if (!(v instanceof Uint8Array)) this.fail(key, `must be bytes, got ${describe(v)}`)
    const min = opts.minBytes ?? 0
    if (v.byteLength < min) this.fail(key, `must be at least ${min} bytes, got ${v.byteLength}`)
    if (v.byteLength > opts.maxBytes) this.fail(key, `must be at most ${opts.maxBytes} bytes, got ${v.byteLength}`)
    return v
  }

  stringArray (key: string, opts: { maxItems: number, maxItemLength: number, minItemLength?: number, itemPattern?: RegExp, itemHint?: string }): string[] {
    const v = this.value[key]
    if (!this.has(key)) this.fail(key, 'is missing')
    if (!Array.isArray(v)) this.fail(key, `must be a list of strings, got ${describe(v)}`)
    if (v.length > opts.maxItems) this.fail(key, `must have at most ${opts.maxItems} entries, got ${v.length}`)
    const min = opts.minItemLength ?? 0
    v.forEach((item: unknown, i: number) => {
      const at = `${key}[${i}]`
      if (typeof item !== 'string') this.fail(at, `must be a string, got ${describe(item)}`)
      if (item.length < min) this.fail(at, min === 1 ? 'must not be empty' : `must be at least ${min} characters, got ${item.length}`)
      if (item.length > opts.maxItemLength) this.fail(at, `must be at most ${opts.maxItemLength} characters, got ${item.length}`)
      if (opts.itemPattern != null && !opts.itemPattern.test(item)) this.fail(at, `must be ${opts.itemHint ?? `like ${String(opts.itemPattern)}`}, got ${quote(item)}`)
    })
    return [...v] as string[]
  }

  /** A CIDv1 string with the given codec and sha2-256, kept as the string that arrived (it is what was signed). */
  cid (key: string, codec: 'raw' | 'dag-cbor'): string {
    const v = this.string(key, { maxLength: MAX_CID_LENGTH })
    const cid = parseCid(v)
    if (cid == null) this.fail(key, `must be a CID string, got ${quote(v)}`)
    const code = codec === 'raw' ? RAW_CODE : DAG_CBOR_CODE
    if (cid.version !== 1 || cid.code !== code || cid.multihash.code !== SHA2_256_CODE) {
      this.fail(key, `must be a CIDv1 ${codec} sha2-256, got version ${cid.version} codec 0x${cid.code.toString(16)} hash 0x${cid.multihash.code.toString(16)}`)
    }
    return v
  }

  /** A list of at most `maxItems` CIDv1 strings of one codec, each checked as `cid` does. */
  cidArray (key: string, codec: 'raw' | 'dag-cbor', maxItems: number): string[] {
    const list = this.stringArray(key, { maxItems, maxItemLength: MAX_CID_LENGTH, minItemLength: 1 })
    // each item read as a field named `key[i]`, so a bad one is reported by its index
    const items = new FieldReader(this.messageType, Object.fromEntries(list.map((cid, i) => [`${key}[${i}]`, cid])), this.path)
    return list.map((_, i) => items.cid(`${key}[${i}]`, codec))
  }
}

/** Longest CID string we accept: a CIDv1 sha2-256 in base32 is 59 characters, base58btc 49; room for base16. */
export const MAX_CID_LENGTH = 100

/**
 * dag-cbor decode with a size check first, so a peer cannot make us parse an
 * arbitrarily large document; any decode failure becomes a MalformedMessageError.
 */
export function decodeBounded (messageType: string, bytes: Uint8Array, maxBytes: number): unknown {
  if (!(bytes instanceof Uint8Array)) {
    throw new MalformedMessageError(messageType, '(message)', `must be bytes, got ${describe(bytes)}`)
  }
  if (bytes.byteLength > maxBytes) {
    throw new MalformedMessageError(messageType, '(message)', `is ${bytes.byteLength} bytes, over the ${maxBytes}-byte limit`)
  }
  if (bytes.byteLength === 0) {
    throw new MalformedMessageError(messageType, '(message)', 'is empty')
  }
  try {
    return dagCbor.decode(bytes)
  } catch (err) {
    throw new MalformedMessageError(messageType, '(message)', `is not valid dag-cbor: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * dag-cbor encode of a plain object, dropping `undefined` fields (dag-cbor
 * refuses `undefined`; an absent optional field is what we mean).
 */
export function encodePlain (value: Fields): Uint8Array {
  const clean: Fields = {}
  for (const [k, v] of Object.entries(value)) {
    if (v !== undefined) clean[k] = v
  }
  return dagCbor.encode(clean)
}

function isPlainMap (value: unknown): value is Fields {
  return value != null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array) &&
    (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)
}

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'nothing'
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`
  if (Array.isArray(value)) return `a list of ${value.length}`
  if (typeof value === 'string') return `the string ${quote(value)}`
  if (typeof value === 'bigint') return `the integer ${value.toString()}`
  if (typeof value === 'number') return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`
  if (typeof value === 'object') {
    // a CID tag decodes to a CID object: say so, it is the likeliest mistake
    if ((value as { asCID?: unknown }).asCID === value) return 'a CID object (send CIDs as strings)'
    return 'a map'
  }
  return `a ${typeof value}`
}

function quote (value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)
}
