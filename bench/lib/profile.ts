/**
 * A short reading of a V8 .cpuprofile (as written by `node --cpu-prof`): idle
 * share, the functions with the most self time, and the packages/source files
 * with the most inclusive time (a sample counts once for every package on its
 * stack). Enough to see what a benchmark process spends itself on; open the
 * file in Chrome DevTools for the full picture.
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const ROOT = new URL('../../', import.meta.url).href

function shortUrl (url: string): string {
  if (url.includes('/node_modules/')) return url.replace(/^.*node_modules\//, '')
  return url.startsWith(ROOT) ? url.slice(ROOT.length) : url.replace(/^file:\/\//, '')
}

function packageOf (url: string, name: string): string {
  if (url === '') return name
  const nm = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)
  if (nm != null) return nm[1]
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/')
  return shortUrl(url)
}

export function summarizeProfile (file: string, top = 12): string[] {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(p.nodes.map(n => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let total = 0
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i] ?? 0
    total += us
    const leaf = byId.get(p.samples[i])
    if (leaf == null) continue
    const cf = leaf.callFrame
    const key = `${cf.functionName === '' ? '(anonymous)' : cf.functionName} ${cf.url === '' ? '' : `${shortUrl(cf.url)}:${cf.lineNumber + 1}`}`.trim()
    self.set(key, (self.get(key) ?? 0) + us)
    const seen = new Set<string>()
    for (let id: number | undefined = leaf.id; id != null; id = parent.get(id)) {
      const n = byId.get(id)
      if (n == null) break
      seen.add(packageOf(n.callFrame.url, n.callFrame.functionName))
    }
    for (const k of seen) inclusive.set(k, (inclusive.get(k) ?? 0) + us)
  }
  const pct = (us: number): string => `${(100 * us / Math.max(1, total)).toFixed(1)}%`
  const list = (m: Map<string, number>, skip: Set<string>): string => [...m].filter(([k]) => !skip.has(k)).sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([k, us]) => `${k} ${pct(us)}`).join('; ')
  const idle = self.get('(idle)') ?? 0
  return [
    `${(total / 1e6).toFixed(1)} s sampled, ${pct(idle)} idle, ${pct(self.get('(garbage collector)') ?? 0)} GC`,
    `most self time: ${list(self, new Set(['(idle)']))}`,
    `most inclusive time by package/file: ${list(inclusive, new Set(['(root)', '(idle)', '(program)', 'node:internal/process', 'runMicrotasks', 'node:internal/modules', 'node:internal/main']))}`
  ]
}
