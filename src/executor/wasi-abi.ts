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
  fault: 21,
  inval: 28,
  io: 29,
  nosys: 52,
  notdir: 54,
  notsup: 58,
  spipe: 70
} as const

/** `$filetype` */
export const FileType = {
  unknown: 0,
  characterDevice: 2
} as const

/** `$rights` bits used for the three standard streams */
export const Rights = {
  fdRead: 1n << 1n,
  fdWrite: 1n << 6n,
  pollFdReadwrite: 1n << 27n
} as const

/** `$clockid` */
export const ClockId = {
  realtime: 0,
  monotonic: 1,
  processCputime: 2,
  threadCputime: 3
} as const

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
