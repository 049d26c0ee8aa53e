/**
 * Summarises a V8 `.cpuprofile` (written by `node --cpu-prof`): self time per
 * function and per package (node_modules/<pkg>, the project's own src/…,
 * node: internals), largest first. Used to say what limits bench/scale.ts.
 *
 *   node_modules/.bin/node bench/lib/cpuprofile-top.ts FILE.cpuprofile [N]
 */
import { readFileSync } from 'node:fs'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, hitCount?: number }
interface Profile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

/** "node_modules/@libp2p/gossipsub" → "@libp2p/gossipsub"; "src/net/…" → "src/net"; "node:…" → "node:internal" */
export function packageOf (url: string): string {
  if (url === '') return '(native / idle / gc)'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.startsWith('node:')) return 'node: internals'
  const src = url.indexOf('/src/')
  if (src >= 0) return `src/${url.slice(src + 5).split('/')[0]}`
  return url
}

export function summariseProfile (p: Profile, n = 15): { totalMs: number, byFunction: Array<[string, number]>, byPackage: Array<[string, number]> } {
  const byId = new Map(p.nodes.map(x => [x.id, x]))
  const self = new Map<number, number>()
  // timeDeltas[i] is the time before sample i: attribute it to that sample's node
  p.samples.forEach((id, i) => { self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)) })
  const fn = new Map<string, number>()
  const pkg = new Map<string, number>()
  for (const [id, us] of self) {
    const node = byId.get(id)
    if (node == null) continue
    const cf = node.callFrame
    const key = `${cf.functionName !== '' ? cf.functionName : '(anonymous)'} ${cf.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/')}:${cf.lineNumber + 1}`
    fn.set(key, (fn.get(key) ?? 0) + us / 1000)
    const k = ['(idle)', '(program)', '(garbage collector)'].includes(cf.functionName) ? cf.functionName : packageOf(cf.url)
    pkg.set(k, (pkg.get(k) ?? 0) + us / 1000)
  }
  const top = (m: Map<string, number>): Array<[string, number]> => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)
  return { totalMs: (p.endTime - p.startTime) / 1000, byFunction: top(fn), byPackage: top(pkg) }
}

if (import.meta.main) {
  const file = process.argv[2]
  if (file == null) throw new Error('usage: cpuprofile-top.ts FILE.cpuprofile [N]')
  const s = summariseProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(process.argv[3] ?? 15))
  const busy = s.byPackage.filter(([k]) => k !== '(idle)').reduce((a, [, v]) => a + v, 0)
  process.stdout.write(`${file}: ${(s.totalMs / 1000).toFixed(1)} s profiled\nby package (self ms; busy total of the top entries ${busy.toFixed(0)} ms):\n`)
  for (const [k, v] of s.byPackage) process.stdout.write(`  ${v.toFixed(0).padStart(8)}  ${k}\n`)
  process.stdout.write('by function (self ms):\n')
  for (const [k, v] of s.byFunction) process.stdout.write(`  ${v.toFixed(0).padStart(8)}  ${k}\n`)
}
