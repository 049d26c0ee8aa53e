/**
 * Constants and signatures of WASI preview1 (`wasi_snapshot_preview1`), from
 * the witx definitions in WebAssembly/WASI (legacy/preview1/witx/typenames.witx
 * and wasi_snapshot_preview1.witx). Shared by the policy check (an import with
 * the wrong signature is refused before anything runs) and by the shim.
 */

export const WASI_MODULE = 'wasi_snapshot_preview1'

/** errno values (typenames.witx, `$errno`) */
export const Errno = {
  success: 0,
  acces: 2,
  badf: 8,
  busy: 10,
  exist: 20,
  fault: 21,
  fbig: 22,
  ilseq: 25,
  inval: 28,
  io: 29,
  isdir: 31,
  loop: 32,
  mfile: 33,
  mlink: 34,
  nametoolong: 37,
  noent: 44,
  nospc: 51,
  nosys: 52,
  notdir: 54,
  notempty: 55,
  notsock: 57,
  notsup: 58,
  overflow: 61,
  perm: 63,
  spipe: 70,
  xdev: 75,
  notcapable: 76
} as const

/** `$filetype` */
export const FileType = {
  unknown: 0,
  characterDevice: 2,
  directory: 3,
  regularFile: 4,
  symbolicLink: 7
} as const

/** `$rights` bits */
export const Rights = {
  fdDatasync: 1n << 0n,
  fdRead: 1n << 1n,
  fdSeek: 1n << 2n,
  fdFdstatSetFlags: 1n << 3n,
  fdSync: 1n << 4n,
  fdTell: 1n << 5n,
  fdWrite: 1n << 6n,
  fdAdvise: 1n << 7n,
  fdAllocate: 1n << 8n,
  pathCreateDirectory: 1n << 9n,
  pathCreateFile: 1n << 10n,
  pathLinkSource: 1n << 11n,
  pathLinkTarget: 1n << 12n,
  pathOpen: 1n << 13n,
  fdReaddir: 1n << 14n,
  pathReadlink: 1n << 15n,
  pathRenameSource: 1n << 16n,
  pathRenameTarget: 1n << 17n,
  pathFilestatGet: 1n << 18n,
  pathFilestatSetSize: 1n << 19n,
  pathFilestatSetTimes: 1n << 20n,
  fdFilestatGet: 1n << 21n,
  fdFilestatSetSize: 1n << 22n,
  fdFilestatSetTimes: 1n << 23n,
  pathSymlink: 1n << 24n,
  pathRemoveDirectory: 1n << 25n,
  pathUnlinkFile: 1n << 26n,
  pollFdReadwrite: 1n << 27n,
  sockShutdown: 1n << 28n,
  sockAccept: 1n << 29n
} as const

/** every right there is */
export const ALL_RIGHTS = (1n << 30n) - 1n

/** `$clockid` */
export const ClockId = {
  realtime: 0,
  monotonic: 1,
  processCputime: 2,
  threadCputime: 3
} as const

/** `$oflags` of path_open */
export const OFlags = { creat: 1, directory: 2, excl: 4, trunc: 8 } as const

/** `$fdflags` */
export const FdFlags = { append: 1, dsync: 2, nonblock: 4, rsync: 8, sync: 16 } as const

/** `$lookupflags` */
export const LookupFlags = { symlinkFollow: 1 } as const

/** `$fstflags` of the set_times calls */
export const FstFlags = { atim: 1, atimNow: 2, mtim: 4, mtimNow: 8 } as const

/** `$whence` of fd_seek */
export const Whence = { set: 0, cur: 1, end: 2 } as const

/** `$eventtype` of poll_oneoff */
export const EventType = { clock: 0, fdRead: 1, fdWrite: 2 } as const

/** `$subclockflags`: the timeout is an absolute time of the clock, not a duration */
export const SUBSCRIPTION_CLOCK_ABSTIME = 1

const i32 = 0x7f
const i64 = 0x7e

/** Signature of every preview1 function: [params, results] as value type bytes. */
export const WASI_SIGNATURES: Readonly<Record<string, readonly [readonly number[], readonly number[]]>> = Object.freeze({
  args_get: [[i32, i32], [i32]],
  args_sizes_get: [[i32, i32], [i32]],
  environ_get: [[i32, i32], [i32]],
  environ_sizes_get: [[i32, i32], [i32]],
  clock_res_get: [[i32, i32], [i32]],
  clock_time_get: [[i32, i64, i32], [i32]],
  fd_advise: [[i32, i64, i64, i32], [i32]],
  fd_allocate: [[i32, i64, i64], [i32]],
  fd_close: [[i32], [i32]],
  fd_datasync: [[i32], [i32]],
  fd_fdstat_get: [[i32, i32], [i32]],
  fd_fdstat_set_flags: [[i32, i32], [i32]],
  fd_fdstat_set_rights: [[i32, i64, i64], [i32]],
  fd_filestat_get: [[i32, i32], [i32]],
  fd_filestat_set_size: [[i32, i64], [i32]],
  fd_filestat_set_times: [[i32, i64, i64, i32], [i32]],
  fd_pread: [[i32, i32, i32, i64, i32], [i32]],
  fd_prestat_get: [[i32, i32], [i32]],
  fd_prestat_dir_name: [[i32, i32, i32], [i32]],
  fd_pwrite: [[i32, i32, i32, i64, i32], [i32]],
  fd_read: [[i32, i32, i32, i32], [i32]],
  fd_readdir: [[i32, i32, i32, i64, i32], [i32]],
  fd_renumber: [[i32, i32], [i32]],
  fd_seek: [[i32, i64, i32, i32], [i32]],
  fd_sync: [[i32], [i32]],
  fd_tell: [[i32, i32], [i32]],
  fd_write: [[i32, i32, i32, i32], [i32]],
  path_create_directory: [[i32, i32, i32], [i32]],
  path_filestat_get: [[i32, i32, i32, i32, i32], [i32]],
  path_filestat_set_times: [[i32, i32, i32, i32, i64, i64, i32], [i32]],
  path_link: [[i32, i32, i32, i32, i32, i32, i32], [i32]],
  path_open: [[i32, i32, i32, i32, i32, i64, i64, i32, i32], [i32]],
  path_readlink: [[i32, i32, i32, i32, i32, i32], [i32]],
  path_remove_directory: [[i32, i32, i32], [i32]],
  path_rename: [[i32, i32, i32, i32, i32, i32], [i32]],
  path_symlink: [[i32, i32, i32, i32, i32], [i32]],
  path_unlink_file: [[i32, i32, i32], [i32]],
  poll_oneoff: [[i32, i32, i32, i32], [i32]],
  proc_exit: [[i32], []],
  proc_raise: [[i32], [i32]],
  sched_yield: [[], [i32]],
  random_get: [[i32, i32], [i32]],
  sock_accept: [[i32, i32, i32], [i32]],
  sock_recv: [[i32, i32, i32, i32, i32, i32], [i32]],
  sock_send: [[i32, i32, i32, i32, i32], [i32]],
  sock_shutdown: [[i32, i32], [i32]]
})

const VALTYPE_NAMES: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x70: 'funcref', 0x6f: 'externref' }

/** `(i32, i64) -> i32` */
export function formatSignature (params: readonly number[], results: readonly number[]): string {
  const list = (ts: readonly number[]): string => ts.map(t => VALTYPE_NAMES[t] ?? `0x${t.toString(16)}`).join(', ')
  return `(${list(params)}) -> ${results.length === 1 ? list(results) : `(${list(results)})`}`
}
