/**
 * What a donor tells other peers in words (a task's error, an offer's
 * reason) says what happened, not how the donor is laid out: its install
 * path, home directory and other absolute paths, and native or JavaScript
 * stack frames stay in its own log. Applied where the answer is encoded,
 * so no code path can send them by accident.
 */
import { homedir } from 'node:os'
import { fileURLToPath } from 'node:url'

/** Longest text a donor sends in an error or a reason, in characters. */
export const PEER_TEXT_LENGTH = 1024

/** The directories whose names are the donor's own business, longest first. */
export interface LocalRoots {
  /** where this program is installed */
  install: string
  /** the user's home directory */
  home: string
}

/** This process's roots: the package root (two folders above this file) and the home directory. */
export function localRoots (): LocalRoots {
  return { install: fileURLToPath(new URL('../../', import.meta.url)), home: homedir() }
}

const DEFAULT_ROOTS = localRoots()

/** A line of a JavaScript stack (`    at fn (file:1:2)`), or a native frame or rule of V8's fatal-error report. */
const STACK_LINE = /^\s*(?:at\s|={3,}|-{3,}|\d+:\s+0x[0-9a-f]+|\^+\s*$)/
/**
 * The first segments of a slash-separated text that is not a file path: a
 * multiaddr or a protocol ID, which do say something to the other peer.
 */
const NOT_A_PATH = '(?:ip4|ip6|ip6zone|dns|dns4|dns6|dnsaddr|tcp|udp|quic|quic-v1|ws|wss|tls|sni|p2p|p2p-circuit|webrtc|webrtc-direct|webtransport|certhash|http|https|ipfs|ipns|worldcompute|libp2p|meshsub|floodsub|ipfs-id|multistream|yamux|noise)\\b'
/** An absolute POSIX path of two segments or more, not preceded by a word, a path, a placeholder or a URL scheme. */
const POSIX_PATH = new RegExp(`(?<![\\w/.:~>-])/(?!${NOT_A_PATH})[^\\s/:'"()<>,;]+(?:/[^\\s/:'"()<>,;]*)+`, 'g')
/** A Windows drive path or a UNC share. */
const WINDOWS_PATH = /(?<![\w])(?:[A-Za-z]:\\|\\\\)[^\s'"()<>,;]*/g

/**
 * `text` with the donor's internals taken out: stack lines dropped,
 * `file://` URLs and paths under the install root or the home directory
 * shown relative to `<install>` and `~`, any other absolute path replaced by
 * `<path>`, line breaks flattened, and the whole capped at `maxLength`.
 */
export function sanitiseForPeer (text: string, maxLength = PEER_TEXT_LENGTH, roots: LocalRoots = DEFAULT_ROOTS): string {
  // V8's fatal report prefixes its lines with '#': the words stay, the markers go
  const lines = text.split(/\r?\n/).filter(line => !STACK_LINE.test(line)).map(line => line.replace(/^\s*#+\s*/, ''))
  let out = lines.join(' ').replace(/file:\/\/(?=\/|[A-Za-z]:)/g, '')
  for (const [root, name] of rootsLongestFirst(roots)) out = replaceAll(out, root, name)
  out = out.replace(POSIX_PATH, '<path>').replace(WINDOWS_PATH, '<path>')
  out = out.replace(/\s+/g, ' ').trim()
  return out.length <= maxLength ? out : `${out.slice(0, maxLength - 1)}…`
}

function rootsLongestFirst (roots: LocalRoots): Array<[string, string]> {
  const list: Array<[string, string]> = []
  for (const [dir, name] of [[roots.install, '<install>'], [roots.home, '~']] as const) {
    const trimmed = dir.replace(/[/\\]+$/, '')
    // a root of "/" or "" would swallow every path: those are left to the generic rule
    if (trimmed.length > 1) list.push([trimmed, name])
  }
  return list.sort((a, b) => b[0].length - a[0].length)
}

function replaceAll (text: string, find: string, replacement: string): string {
  return text.split(find).join(replacement)
}
