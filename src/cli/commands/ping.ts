import { commonOptions, parse, UsageError } from '../args.ts'
import { ApiClient } from '../../api/client.ts'
import { resolveDataDir } from '../../config/data-dir.ts'
import { printJson, type Output } from '../output.ts'
import { renderPing } from '../render.ts'

export const help = `worldcompute ping TARGET [--count N] [--data-dir DIR] [--json]

Asks the daemon to reach TARGET (a PeerId or a multiaddr) and prints, for each
probe, the round-trip time and the path taken: direct over which transport, or
through which relay. A PeerId with no known address is tried through every
relay the daemon is connected to.`

export async function run (argv: string[], o: Output): Promise<number> {
  const { values, positionals } = parse(argv, { ...commonOptions, count: { type: 'string', short: 'c' } }, 'ping')
  if (values.help) { o.out(help); return 0 }
  if (positionals.length !== 1) throw new UsageError('ping: give exactly one TARGET (a PeerId or a multiaddr)')
  const count = values.count != null ? Number(values.count) : 3
  if (!Number.isInteger(count) || count < 1 || count > 100) throw new UsageError(`ping: --count must be 1–100, got "${values.count}"`)
  const client = new ApiClient({ dataDir: resolveDataDir(values['data-dir']) })
  const result = await client.call('ping', { target: positionals[0], count }, { timeoutMs: 30_000 + count * 12_000 })
  if (values.json) printJson(o, result)
  else renderPing(o, result)
  return result.probes.some(p => p.ok) ? 0 : 1
}
