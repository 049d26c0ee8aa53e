/**
 * The direct-path matrix (issue 16 part 6): for every ordered pair of the
 * lab's NAT kinds (test/lab/nat-kinds.ts, test/lab/topology.ts), two donors
 * at two sites meet through two relays, and the submitter is watched for a
 * direct upgrade to the executor: which mechanism (WebRTC through the NATs,
 * or a dial of a public address), how long after the first job, or why not.
 * N attempts per pair, each in a fresh topology. Prints a markdown table (and
 * the theory's expectation per pair, so a failure reads as physics or as
 * ours); `--json-out` writes every attempt.
 *
 *   node_modules/.bin/node bench/nat-matrix.ts [--attempts 3] [--kinds none,cone,…] [--wait-ms 30000] [--json-out FILE]
 *
 * Needs root (network namespaces, iptables). Sends traffic only inside the
 * namespaces it creates. Bounded: each attempt waits at most --wait-ms for
 * the upgrade after its warm-up job, and the whole run stops at --max-minutes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { labSkipReason, type NatKind } from '../test/lab/topology.ts'
import { NAT_KIND_BEHAVIOUR } from '../test/lab/nat-kinds.ts'
import { pairRunDir, runNatPair, type PairOutcome } from '../test/lab/nat-matrix-run.ts'

const ALL_KINDS: NatKind[] = ['none', 'full-cone', 'restricted-cone', 'cone', 'symmetric-seq', 'symmetric']

interface Args { attempts: number, kinds: NatKind[], waitMs: number, jsonOut?: string, maxMinutes: number }

function parseArgs (argv: string[]): Args {
  const args: Args = { attempts: 3, kinds: ALL_KINDS, waitMs: 30_000, maxMinutes: 120 }
  for (let i = 0; i < argv.length; i++) {
    const next = (): string => {
      const v = argv[++i]
      if (v == null) throw new Error(`${argv[i - 1]} needs a value`)
      return v
    }
    switch (argv[i]) {
      case '--attempts': args.attempts = Number(next()); break
      case '--kinds': args.kinds = next().split(',').map(k => k.trim()) as NatKind[]; break
      case '--wait-ms': args.waitMs = Number(next()); break
      case '--json-out': args.jsonOut = next(); break
      case '--max-minutes': args.maxMinutes = Number(next()); break
      default: throw new Error(`unknown argument ${argv[i]}`)
    }
  }
  for (const k of args.kinds) if (NAT_KIND_BEHAVIOUR[k] == null) throw new Error(`unknown NAT kind ${k} (known: ${ALL_KINDS.join(', ')})`)
  if (!Number.isInteger(args.attempts) || args.attempts < 1) throw new Error('--attempts must be a positive integer')
  return args
}

/**
 * What RFC 4787 behaviour allows for a pair, with ICE (both sides send to
 * each other's reflexive address at once) and the mechanisms we have.
 */
export function expected (a: NatKind, b: NatKind): string {
  const hard = (k: NatKind): boolean => NAT_KIND_BEHAVIOUR[k].mapping === 'APDM'
  if (a === 'none' || b === 'none') return 'yes: one side is open'
  if (!hard(a) && !hard(b)) return 'yes: both mappings endpoint-independent'
  if (hard(a) && hard(b)) return a === 'symmetric-seq' && b === 'symmetric-seq' ? 'only with prediction on both sides (not attempted)' : 'no: both mappings port-dependent'
  const easy = hard(a) ? b : a
  const tough = hard(a) ? a : b
  if (NAT_KIND_BEHAVIOUR[easy].filtering !== 'APDF') return `yes: ${easy} filtering lets the new mapping in`
  return tough === 'symmetric-seq' ? 'yes, with port prediction' : 'no: random ports behind a port-restricted filter'
}

function cell (outcomes: PairOutcome[]): string {
  const ok = outcomes.filter(o => o.direct)
  const errors = outcomes.filter(o => o.error != null)
  const ms = ok.map(o => o.msToDirect ?? 0).sort((x, y) => x - y)
  const median = ms.length > 0 ? `, median ${(ms[Math.floor(ms.length / 2)] / 1000).toFixed(1)} s` : ''
  const how = [...new Set(ok.map(o => o.transport))].join('+')
  return `${ok.length}/${outcomes.length - errors.length}${how !== '' ? ` ${how}` : ''}${median}${errors.length > 0 ? ` (${errors.length} not measured)` : ''}`
}

function table (kinds: NatKind[], results: Map<string, PairOutcome[]>): string {
  const lines = [`| submitter ↓ / executor → | ${kinds.join(' | ')} |`, `|---|${kinds.map(() => '---').join('|')}|`]
  for (const a of kinds) lines.push(`| **${a}** | ${kinds.map(b => cell(results.get(`${a}|${b}`) ?? [])).join(' | ')} |`)
  return lines.join('\n')
}

function details (kinds: NatKind[], results: Map<string, PairOutcome[]>): string {
  const lines = ['| pair | theory | measured NATs (mapping/filtering) | outcome | why (submitter\'s view) |', '|---|---|---|---|---|']
  for (const a of kinds) {
    for (const b of kinds) {
      const outs = results.get(`${a}|${b}`) ?? []
      if (outs.length === 0) continue
      const o = outs[outs.length - 1]
      const why = (o.error != null ? `not measured: ${o.error}` : o.reason).replace(/\|/g, '/').slice(0, 220)
      lines.push(`| ${a} → ${b} | ${expected(a, b)} | ${o.measured.submitter}, ${o.measured.executor} | ${cell(outs)} | ${why} |`)
    }
  }
  return lines.join('\n')
}

/** The commit measured: WC_BENCH_COMMIT (a copy of the tree outside git), else `git rev-parse`. */
function commitOf (): string {
  if (process.env.WC_BENCH_COMMIT != null && process.env.WC_BENCH_COMMIT !== '') return process.env.WC_BENCH_COMMIT
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()
  } catch (err) {
    return `unknown (${(err as Error).message.split('\n')[0]})`
  }
}

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const skip = labSkipReason()
  if (skip != null) {
    process.stdout.write(`nat-matrix: not run: ${skip}\n`)
    return
  }
  const root = mkdtempSync(join(tmpdir(), 'wc-bench-nat-matrix-'))
  const deadline = Date.now() + args.maxMinutes * 60_000
  const results = new Map<string, PairOutcome[]>()
  const load = loadavg()
  const started = Date.now()
  for (let attempt = 1; attempt <= args.attempts; attempt++) {
    for (const a of args.kinds) {
      for (const b of args.kinds) {
        if (Date.now() > deadline) break
        const t0 = Date.now()
        const o = await runNatPair(a, b, { runDir: pairRunDir(root, a, b, attempt), waitMs: args.waitMs, log: l => process.stderr.write(`  ${l}\n`) })
        results.set(`${a}|${b}`, [...(results.get(`${a}|${b}`) ?? []), o])
        process.stderr.write(`nat-matrix: ${a} → ${b} #${attempt}: ${o.direct ? `direct over ${o.transport ?? '?'} after ${o.msToDirect ?? '?'} ms` : `relayed: ${o.error ?? o.reason}`} (${Math.round((Date.now() - t0) / 1000)} s)\n`)
      }
    }
  }
  const commit = commitOf()
  const all = [...results.values()].flat()
  const measured = all.filter(o => o.error == null)
  process.stdout.write([
    `# NAT pair matrix — ${new Date().toISOString()}, commit ${commit}`,
    `command: node_modules/.bin/node bench/nat-matrix.ts ${process.argv.slice(2).join(' ')}`,
    `direct upgrades: ${measured.filter(o => o.direct).length} of ${measured.length} measured attempts (${all.length - measured.length} not measured); ${Math.round((Date.now() - started) / 60_000)} min; load ${load.map(x => x.toFixed(2)).join('/')} → ${loadavg().map(x => x.toFixed(2)).join('/')} on ${availableParallelism()} cores`,
    '',
    table(args.kinds, results),
    '',
    details(args.kinds, results),
    ''
  ].join('\n'))
  if (args.jsonOut != null) writeFileSync(args.jsonOut, JSON.stringify(all, null, 2) + '\n')
  if (process.env.WC_BENCH_KEEP !== '1') rmSync(root, { recursive: true, force: true })
}

await main()
