import { spawn } from 'node:child_process'
import { commonOptions, parse } from '../args.ts'
import { ApiClient } from '../../api/client.ts'
import { resolveDataDir } from '../../config/data-dir.ts'
import { printJson, type Output } from '../output.ts'

export const help = `worldcompute dashboard [--open] [--data-dir DIR] [--json]

Prints a link that logs a browser on this machine into the running daemon's
dashboard: its PeerId, the relays it holds reservations on and over which
transport, NAT type and reachability, the connections it makes (for IT), jobs
it ran for others, charts of dial outcomes and CPU time, its settings, and a
Pause/Resume button. The page is served by the daemon on 127.0.0.1.

The link works once, for 60 seconds; the browser then stays logged in for
12 hours, or until the daemon restarts. --open starts the system's browser
with it (xdg-open, open, or start); the link is printed either way.`

/** How a browser was (or was not) started with the link. */
export type OpenResult = { opened: true, command: string } | { opened: false, reason: string }

export interface OpenBrowserOptions {
  /** @default process.platform */
  platform?: NodeJS.Platform
  /** @default process.env */
  env?: NodeJS.ProcessEnv
}

/** The system's "open this URL" command: `open` on macOS, `start` on Windows, `xdg-open` elsewhere. */
function openerFor (platform: NodeJS.Platform, url: string): { command: string, args: string[] } {
  if (platform === 'darwin') return { command: 'open', args: [url] }
  // the link holds only URL-safe characters (base64url token), so cmd's parsing leaves it whole
  if (platform === 'win32') return { command: 'cmd', args: ['/c', 'start', '""', url] }
  return { command: 'xdg-open', args: [url] }
}

/**
 * Starts the system's browser with `url` and leaves it running; resolves once
 * the opener process started or could not be started (not found, not
 * executable), never rejects: the caller prints the link either way.
 */
export async function openBrowser (url: string, options: OpenBrowserOptions = {}): Promise<OpenResult> {
  const { command, args } = openerFor(options.platform ?? process.platform, url)
  return await new Promise<OpenResult>(resolve => {
    const child = spawn(command, args, { stdio: 'ignore', detached: true, env: options.env ?? process.env })
    child.once('error', (err: NodeJS.ErrnoException) => {
      resolve({ opened: false, reason: err.code === 'ENOENT' ? `${command} was not found` : `${command} could not start (${err.code ?? err.message})` })
    })
    child.once('spawn', () => {
      child.unref()
      resolve({ opened: true, command })
    })
  })
}

function secondsLeft (iso: string): number {
  return Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000))
}

export async function run (argv: string[], o: Output): Promise<number> {
  return await runDashboard(argv, o)
}

/** `run` with the way a browser is started as a parameter (a test passes one that records the link). */
export async function runDashboard (argv: string[], o: Output, open: (url: string) => Promise<OpenResult> = openBrowser): Promise<number> {
  const { values } = parse(argv, { ...commonOptions, open: { type: 'boolean', default: false } }, 'dashboard')
  if (values.help) { o.out(help); return 0 }
  const client = new ApiClient({ dataDir: resolveDataDir(values['data-dir']) })
  const login = await client.call('dashboardLoginToken', {})
  const opened = values.open ? await open(login.url) : undefined
  if (values.json) {
    printJson(o, { ...login, ...(opened != null ? { opened: opened.opened, ...(opened.opened ? {} : { reason: opened.reason }) } : {}) })
    return 0
  }
  if (opened != null && !opened.opened) o.err(`worldcompute: could not open a browser (${opened.reason}); open this link yourself:`)
  else if (opened == null) o.err(`Open this link in a browser on this machine (it works once, within ${secondsLeft(login.expiresAt)} s):`)
  o.out(login.url)
  return 0
}
