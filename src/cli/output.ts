/**
 * The only place that writes to the terminal. Commands compute data; these
 * functions render it, human-readable or `--json`.
 */

export interface Output {
  out: (line: string) => void
  err: (line: string) => void
}

export const stdio: Output = {
  out: (line) => { process.stdout.write(line + '\n') },
  err: (line) => { process.stderr.write(line + '\n') }
}

export function printJson (o: Output, value: unknown): void {
  o.out(JSON.stringify(value, null, 2))
}

export function ago (iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s ago`
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m ago`
}
