import { commonOptions, parse, UsageError } from '../args.ts'
import { ApiClient } from '../../api/client.ts'
import { resolveDataDir } from '../../config/data-dir.ts'
import type { DonatedTask } from '../../core/types.ts'
import { shortPeerId } from '../../core/format.ts'
import { printJson, type Output } from '../output.ts'

export const help = `worldcompute donated [--data-dir DIR] [--limit N] [--json]

Lists the tasks this donor ran for others, the newest first: when each ended,
the broker that sent it (PeerId), its job and task ID, its status, the CPU time
its worker thread used and the fuel it burnt. The daemon keeps the newest
10,000 in donated.sqlite in the data directory.

  --limit N   how many to show (1-10000, default 50)`

export async function run (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, { ...commonOptions, limit: { type: 'string' } }, 'donated')
  if (values.help) { o.out(help); return 0 }
  const limit = values.limit != null ? Number(values.limit) : 50
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError(`donated: --limit must be a whole number from 1 to 10000, got "${values.limit ?? ''}"`)
  const client = new ApiClient({ dataDir: resolveDataDir(values['data-dir']) })
  const { tasks } = await client.call('donated', { limit })
  if (values.json) printJson(o, tasks)
  else renderDonated(o, tasks)
  return 0
}

export function renderDonated (o: Output, tasks: DonatedTask[]): void {
  if (tasks.length === 0) {
    o.out('no task run for others yet')
    return
  }
  o.out(`${'ENDED'.padEnd(24)} ${'BROKER'.padEnd(14)} ${'STATUS'.padEnd(18)} ${'CPU'.padStart(9)} ${'FUEL'.padStart(14)}  TASK`)
  for (const t of tasks) {
    const cpu = t.cpuTimeMs != null ? `${(t.cpuTimeMs / 1000).toFixed(2)} s` : '?'
    o.out(`${t.at.padEnd(24)} ${shortPeerId(t.broker).padEnd(14)} ${t.status.padEnd(18)} ${cpu.padStart(9)} ${String(t.fuelUsed).padStart(14)}  ${t.taskId}`)
  }
}
