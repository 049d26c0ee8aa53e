import { commonOptions, parse } from '../args.ts'
import { ApiClient } from '../../api/client.ts'
import { resolveDataDir } from '../../config/data-dir.ts'
import type { DonorControlsView } from '../../core/types.ts'
import { printJson, type Output } from '../output.ts'

export const pauseHelp = `worldcompute pause [--data-dir DIR] [--json]

Pauses the running donor: the jobs it runs for others are suspended at once
(their sandbox is stopped; the time counts against no deadline) and offers of
new tasks are declined (code "paused"), so brokers place them elsewhere or
wait. The pause is kept in the data directory: the donor stays paused across
restarts until \`worldcompute resume\`.`

export const resumeHelp = `worldcompute resume [--data-dir DIR] [--json]

Ends a pause: suspended jobs run again and new tasks are taken, unless a
limit the donor was started with holds them (--run-hours, --suspend-when-busy),
which the answer names.`

/** One line per setting: what `pause`, `resume` and `status` show of the donor controls. */
export function renderControls (o: Output, c: DonorControlsView, indent = ''): void {
  const state = c.pausedBy == null ? 'running' : `suspended: ${c.reason ?? c.pausedBy}`
  o.out(`${indent}Jobs:        ${state}`)
  o.out(`${indent}Paused:      ${c.paused ? `yes, by its owner${c.pausedAt != null ? ` since ${c.pausedAt}` : ''}` : 'no'}`)
  o.out(`${indent}CPU limit:   ${c.cpuLimit === 100 ? 'none' : `${c.cpuLimit}% of one core`}`)
  o.out(`${indent}When busy:   ${c.suspendWhenBusy == null ? 'off' : `suspend above ${c.suspendWhenBusy}% used by other programs${c.otherCpuPercent != null ? ` (now ${c.otherCpuPercent}%)` : ''}`}`)
  o.out(`${indent}Run hours:   ${c.runHours ?? 'always'}`)
}

async function call (name: 'pause' | 'resume', help: string, argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, commonOptions, name)
  if (values.help) { o.out(help); return 0 }
  const client = new ApiClient({ dataDir: resolveDataDir(values['data-dir']) })
  const view = await client.call(name, {})
  if (values.json) printJson(o, view)
  else renderControls(o, view)
  return 0
}

export async function runPause (argv: string[], o: Output): Promise<number> {
  return await call('pause', pauseHelp, argv, o)
}

export async function runResume (argv: string[], o: Output): Promise<number> {
  return await call('resume', resumeHelp, argv, o)
}
