import { commonOptions, parse } from '../args.ts'
import { ApiClient } from '../../api/client.ts'
import { resolveDataDir } from '../../config/data-dir.ts'
import { printJson, type Output } from '../output.ts'
import { renderDials, renderStatus } from '../render.ts'

export const help = `worldcompute status [--data-dir DIR] [--json]

Asks the running daemon what it is doing: reachability (AutoNAT v2), NAT type
(STUN against its relays), relay reservations
(relay, circuit address, transport, since when), connections, the state of
each bootstrap relay, the donor controls (paused, cpu limit, busy, run
hours, and why jobs are suspended now), and a captive portal (a network's
sign-in page) in the way, with its URL. Exits non-zero when no daemon is running.`

export async function run (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, commonOptions, 'status')
  if (values.help) { o.out(help); return 0 }
  const client = new ApiClient({ dataDir: resolveDataDir(values['data-dir']) })
  const status = await client.call('status', {})
  if (values.json) printJson(o, status)
  else renderStatus(o, status)
  return 0
}

export const dialsHelp = `worldcompute dials [--data-dir DIR] [--limit N] [--json]

Shows the daemon's most recent outbound dial attempts: target, transport, the
phase each reached, outcome, cause and duration.`

export async function runDials (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, { ...commonOptions, limit: { type: 'string' } }, 'dials')
  if (values.help) { o.out(dialsHelp); return 0 }
  const client = new ApiClient({ dataDir: resolveDataDir(values['data-dir']) })
  const res = await client.call('dials', { limit: values.limit != null ? Number(values.limit) : 50 })
  if (values.json) printJson(o, res)
  else renderDials(o, res.attempts, res.total)
  return 0
}
