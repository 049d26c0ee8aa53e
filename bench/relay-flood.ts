/**
 * An honest donor reserving on a relay that throw-away identities flood from
 * one host, against the same on a relay nobody floods, in the same run:
 *
 *   quiet      `worldcompute relay`, default admission limits, no flood
 *   guarded    the same, flooded from 127.0.0.2
 *   unguarded  flooded from 127.0.0.4, with the admission limits lifted
 *              (per-IP limits 10^6, grace 2 h: a left reservation stays for
 *              the TTL), the relay as it was without them
 *
 * Every relay runs with `--per-ip-exempt none` (on loopback every address is
 * exempt by default) and `--max-reservations 128`, so the unguarded table
 * fills within a quick run (1,024 slots take 2 min at the flood's rate). The
 * flood (bench/lib/flood-clients.ts, its own process) reserves with a fresh
 * identity 8 times a second, under the relay's per-host connection threshold
 * of 10/s, and disconnects right after each grant. The honest donor (a
 * js-libp2p node with the circuit relay transport, from 127.0.0.3, a fresh
 * identity each time) reserves on each relay in turn, order rotated per
 * round; its time is dial + Noise + RESERVE until the circuit address is its.
 *
 *   node_modules/.bin/node bench/relay-flood.ts [--quick] [--json-out FILE]
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { reservingClient, tryReserve } from '../test/relay/helpers.ts'
import { benchMain, progress, row, type Cleanup } from './lib/report.ts'
import { cleanEnv, firstJsonLine, spawnProc } from './lib/proc-mem.ts'
import { rotate, summarize } from './lib/stats.ts'
import type { FloodProgress } from './lib/flood-clients.ts'

const BIN = fileURLToPath(new URL('../bin/worldcompute', import.meta.url))
const NODE = fileURLToPath(new URL('../node_modules/.bin/node', import.meta.url))
const FLOOD = fileURLToPath(new URL('./lib/flood-clients.ts', import.meta.url))
const TABLE = 128
const FLOOD_PER_SECOND = 8
const HONEST_IP = '127.0.0.3'
const UNGUARDED = ['--max-reservations-per-ip', '1000000', '--max-connections-per-ip', '1000000', '--max-circuits-per-ip', '1000000', '--reservation-grace', '2h']

type Variant = 'quiet' | 'guarded' | 'unguarded'

interface Flood { child: ChildProcess, last: FloodProgress }

async function startRelay (dir: string, name: Variant, cleanup: Cleanup): Promise<string> {
  const args = ['relay', '--data-dir', join(dir, name), '--json', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-stun',
    '--per-ip-exempt', 'none', '--max-reservations', String(TABLE), ...(name === 'unguarded' ? UNGUARDED : [])]
  const proc = spawnProc(BIN, args, { env: cleanEnv(), logFile: join(dir, `${name}.log`) })
  cleanup.add(`stop relay ${name} (pid ${proc.pid})`, async () => { await proc.stop() })
  const info = await firstJsonLine<{ peerId: string, listenAddrs: string[] }>(proc, `relay ${name}`, 30_000)
  const tcp = info.listenAddrs.find(a => a.startsWith('/ip4/127.0.0.1/tcp/'))
  if (tcp == null) throw new Error(`relay ${name} listens on no 127.0.0.1 TCP address: ${info.listenAddrs.join(' ')}`)
  return tcp.includes('/p2p/') ? tcp : `${tcp}/p2p/${info.peerId}`
}

function startFlood (relayAddr: string, sourceIp: string, cleanup: Cleanup): Flood {
  const child = fork(FLOOD, [relayAddr, sourceIp, String(FLOOD_PER_SECOND)], { execPath: NODE, env: cleanEnv(), stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  const flood: Flood = { child, last: { type: 'progress', attempts: 0, granted: 0, refused: 0 } }
  child.on('message', (m: FloodProgress) => { flood.last = m })
  cleanup.add(`stop flood from ${sourceIp}`, () => { if (child.connected) child.disconnect(); child.kill() })
  return flood
}

/** One honest reservation: its time when granted, else the refusal. */
async function honestReserve (relayAddr: string): Promise<{ ms?: number, refused?: string }> {
  const client = await reservingClient(relayAddr, { sourceIp: HONEST_IP })
  const t0 = performance.now()
  const outcome = await tryReserve(client)
  const ms = performance.now() - t0
  if (outcome !== 'granted') return { refused: outcome }
  await client.stop()
  return { ms }
}

function floodText (f: FloodProgress): string {
  return `${f.attempts} identities tried, ${f.granted} granted, ${f.refused} refused${f.firstError != null ? ` (${statusOf(f.firstError)})` : ''}`
}

/** The relay's answer in a refusal (`RESERVATION_REFUSED`, `PERMISSION_DENIED`), else the message's start. */
function statusOf (message: string): string {
  return /status (\w+)/.exec(message)?.[1] ?? message.slice(0, 80)
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

await benchMain('relay-flood', { quick: 180_000, full: 420_000 }, async (args, cleanup) => {
  const dir = mkdtempSync(join(tmpdir(), 'wc-bench-relay-flood-'))
  cleanup.add('remove the run folder', () => { rmSync(dir, { recursive: true, force: true }) })
  const relays: Record<Variant, string> = {
    quiet: await startRelay(dir, 'quiet', cleanup),
    guarded: await startRelay(dir, 'guarded', cleanup),
    unguarded: await startRelay(dir, 'unguarded', cleanup)
  }
  const floods = { guarded: startFlood(relays.guarded, '127.0.0.2', cleanup), unguarded: startFlood(relays.unguarded, '127.0.0.4', cleanup) }
  // the flood reaches its steady state: the unguarded table full, the guarded relay refusing beyond the per-IP limit
  const warmUpMs = (TABLE / FLOOD_PER_SECOND) * 1_000 + (args.quick ? 6_000 : 12_000)
  for (let waited = 0; waited < warmUpMs; waited += 1_000) {
    await sleep(1_000)
    if (waited % 5_000 === 0) progress(`flood warm-up: guarded relay ${floodText(floods.guarded.last)}; unguarded ${floodText(floods.unguarded.last)}`)
  }
  const rounds = args.quick ? 10 : 30
  const times: Record<Variant, number[]> = { quiet: [], guarded: [], unguarded: [] }
  const refused: Record<Variant, string[]> = { quiet: [], guarded: [], unguarded: [] }
  for (let r = 0; r < rounds; r++) {
    for (const v of rotate(['quiet', 'guarded', 'unguarded'] as const, r)) {
      const o = await honestReserve(relays[v])
      if (o.ms != null) times[v].push(o.ms)
      else refused[v].push(o.refused ?? '?')
    }
  }
  const during = { guarded: { ...floods.guarded.last }, unguarded: { ...floods.unguarded.last } }
  const quiet = summarize(times.quiet)
  const guarded = summarize(times.guarded)
  const rows = [row({
    benchmark: 'relay flood: honest reserve, 1-host flood vs none',
    baselineName: 'no flood',
    baseline: quiet,
    figure: guarded,
    unit: 'ms',
    ratioLabel: 'flooded / quiet relay',
    target: { op: '<=', value: 1.5 }
  })]
  return {
    bench: 'relay-flood',
    rows,
    notes: [
      `${rounds} rounds, one honest reservation on each relay per round (order rotated), ${FLOOD_PER_SECOND} throw-away identities a second from one host at each flooded relay, each disconnecting after its grant; all relays \`--per-ip-exempt none --max-reservations ${TABLE}\`, otherwise default limits (32 reservations per IP, 15 s grace). Flood warm-up ${Math.round(warmUpMs / 1000)} s before the first honest attempt.`,
      `Honest reservations refused: no flood ${refused.quiet.length}/${rounds}, guarded and flooded ${refused.guarded.length}/${rounds}, unguarded and flooded ${refused.unguarded.length}/${rounds}${refused.unguarded[0] != null ? ` (${statusOf(refused.unguarded[0])})` : ''}.`,
      `Flood at the end of the run: guarded relay ${floodText(during.guarded)}; unguarded relay (per-IP limits 10^6, grace 2 h) ${floodText(during.unguarded)}.`,
      ...(times.unguarded.length > 0 ? [`Unguarded relay, honest reservations that got through: ${summarize(times.unguarded).median.toFixed(1)} ms median.`] : [])
    ]
  }
})
