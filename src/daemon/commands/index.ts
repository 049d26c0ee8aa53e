import { main as runCommandLine, type Commands } from '../../cli/cli.ts'
import { stdio, type Output } from '../../cli/output.ts'

/**
 * Every `worldcompute` command. The ones that only talk to a running daemon
 * (through the API client) or read the data directory live in src/cli; the
 * ones that run the stack in this process (`daemon`, `relay`, `doctor`,
 * `evidence`) or as child processes (`demo`) live here, in the composition
 * root, so src/cli never reaches the network layer.
 */
export const commands: Commands = {
  id: { load: async () => (await import('../../cli/commands/id.ts')).run, summary: 'print this node\'s PeerId (creates the identity)' },
  daemon: { load: async () => (await import('./daemon.ts')).run, summary: 'run the donor daemon' },
  relay: { load: async () => (await import('./relay.ts')).run, summary: 'run a relay' },
  status: { load: async () => (await import('../../cli/commands/status.ts')).run, summary: 'what the running daemon is doing' },
  ping: { load: async () => (await import('../../cli/commands/ping.ts')).run, summary: 'reach a peer through the daemon and show the path' },
  job: { load: async () => (await import('../../cli/commands/job.ts')).run, summary: 'submit a WASM job and get its result (submit, status, result, list)' },
  config: { load: async () => (await import('../../cli/commands/config.ts')).run, summary: 'the effective configuration and where each value came from (flag, env, file, default)' },
  pause: { load: async () => (await import('../../cli/commands/controls.ts')).runPause, summary: 'suspend the jobs this donor runs for others and take no new ones, until resume' },
  resume: { load: async () => (await import('../../cli/commands/controls.ts')).runResume, summary: 'end a pause: jobs run again and new ones are taken' },
  donated: { load: async () => (await import('../../cli/commands/donated.ts')).run, summary: 'the tasks this donor ran for others (when, broker, status, CPU time, fuel)' },
  dials: { load: async () => (await import('../../cli/commands/status.ts')).runDials, summary: 'the daemon\'s recent dial attempts and why they failed' },
  dashboard: { load: async () => (await import('../../cli/commands/dashboard.ts')).run, summary: 'a one-time link to the daemon\'s dashboard in a browser (--open starts one)' },
  demo: { load: async () => (await import('./demo.ts')).run, summary: 'start a relay and two relay-only donors on loopback and show them join' },
  doctor: { load: async () => (await import('./doctor.ts')).run, summary: 'what this network allows and blocks, the path a donor would use, what to ask IT (--evidence DIR)' },
  evidence: { load: async () => (await import('./evidence.ts')).run, summary: 'check an evidence bundle (evidence validate PATH)' },
  completion: { load: async () => (await import('../../cli/commands/completion.ts')).completionCommand(commands), summary: 'print a shell completion script (completion bash|zsh)' }
}

/** Runs one `worldcompute` command line; resolves with the exit code. */
export async function main (argv: string[], o: Output = stdio): Promise<number> {
  return await runCommandLine(argv, commands, o)
}
