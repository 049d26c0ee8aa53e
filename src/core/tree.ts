/**
 * Guest paths of a job's filesystem (`job submit --dir HOST::GUEST`): absolute,
 * '/'-separated, normalised. One reading shared by the CLI (which builds the
 * tree), the codec (which checks what a peer sent) and the CLI's `--save`
 * (which must never write outside its directory), so all three refuse the
 * same paths.
 */
import { errorWithCode } from './errors.ts'

/** A guest path that is not absolute, has '..', or is otherwise unusable. */
export class GuestPathError extends errorWithCode('GUEST_PATH_INVALID') {}

/** Longest guest path, in UTF-8 bytes: Linux's PATH_MAX. */
export const MAX_GUEST_PATH_BYTES = 4096

/**
 * Normalises a guest path: repeated and trailing '/' and '.' segments go.
 * Throws GuestPathError when it is not absolute, contains '..' (refused,
 * not resolved: a tree must not name a place outside itself), contains a NUL
 * or is too long.
 */
export function normaliseGuestPath (path: string): string {
  if (!path.startsWith('/')) throw new GuestPathError(`guest path "${path}" must be absolute (start with "/")`)
  if (path.includes('\0')) throw new GuestPathError(`guest path ${JSON.stringify(path)} contains a NUL character`)
  const segments = path.split('/').filter(s => s !== '' && s !== '.')
  if (segments.includes('..')) throw new GuestPathError(`guest path "${path}" must not contain ".."`)
  const normal = '/' + segments.join('/')
  if (Buffer.byteLength(normal) > MAX_GUEST_PATH_BYTES) throw new GuestPathError(`guest path is over ${MAX_GUEST_PATH_BYTES} bytes: "${normal.slice(0, 80)}…"`)
  return normal
}

/** True when `path` is already a normalised absolute guest path. */
export function isNormalGuestPath (path: string): boolean {
  try {
    return normaliseGuestPath(path) === path
  } catch (err) {
    if (err instanceof GuestPathError) return false
    throw err
  }
}

/** True when `path` is `dir` or lies under it (both normalised). */
export function isUnder (path: string, dir: string): boolean {
  return dir === '/' ? path.startsWith('/') : path === dir || path.startsWith(dir + '/')
}

/** Byte order of the UTF-8 paths: the order manifests and result files are sorted in, the same on every machine. */
export function comparePaths (a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}

/**
 * A path of `outers` or `inners` that lies under a path of `outers`, with
 * that outer path; undefined when there is none. The paths are normalised
 * (no NUL), each given once. What a tree must not have: a file or directory
 * under a path given as a file, a preopen inside another.
 *
 * Each path's UTF-8 bytes with '/' made 0, the lowest byte: everything under
 * a path then sorts right after it, so one sort and one look at each entry
 * find it, in time near linear in the paths' bytes. Looking up each path's
 * ancestors instead hashes every prefix of every path, quadratic in a path's
 * depth: seconds of CPU for a tree a hostile peer can send (2,000 files
 * 2,000 directories deep). Buffers, not strings, because replacing 2,000
 * separators in each of 8,000 strings took V8 seconds too.
 */
export function findNested (outers: readonly string[], inners: readonly string[]): { outer: string, inner: string } | undefined {
  const entries = [...outers.map(path => ({ path, outer: true, key: slashAsZero(path) })), ...inners.map(path => ({ path, outer: false, key: slashAsZero(path) }))]
    .sort((a, b) => Buffer.compare(a.key, b.key))
  let outer: { path: string, key: Buffer } | undefined
  for (const e of entries) {
    if (outer !== undefined && keyUnder(e.key, outer.key)) return { outer: outer.path, inner: e.path }
    if (e.outer) outer = e
  }
  return undefined
}

function keyUnder (key: Buffer, dir: Buffer): boolean {
  // the root's key is one 0 byte: everything else lies under it
  if (dir.byteLength === 1 && dir[0] === 0) return key.byteLength > 1
  return key.byteLength > dir.byteLength && key[dir.byteLength] === 0 && dir.equals(key.subarray(0, dir.byteLength))
}

function slashAsZero (path: string): Buffer {
  const bytes = Buffer.from(path)
  for (let i = 0; i < bytes.byteLength; i++) if (bytes[i] === 0x2f) bytes[i] = 0
  return bytes
}
