import { commonOptions, observeParse, parse, UsageError, type Options } from '../args.ts'
import type { Command, Commands } from '../cli.ts'
import type { Output } from '../output.ts'
import { VERSION } from '../../core/version.ts'

export const help = `worldcompute completion bash|zsh

Prints a completion script for the shell: the commands, their subcommands and
the flags of each, as this version of worldcompute parses them. Install it
once, for the current user:

  bash  worldcompute completion bash > ~/.local/share/bash-completion/completions/worldcompute
  zsh   worldcompute completion zsh > ~/.zfunc/_worldcompute
        (with fpath=(~/.zfunc $fpath) before compinit in ~/.zshrc)

or load it in every new shell: source <(worldcompute completion bash) in ~/.bashrc.`

/** A flag as a shell offers it: `--json`, or the short form `-h`. */
export interface FlagSpec {
  flag: string
  /** the next word is the flag's value (a path, a number…), not a flag or subcommand */
  takesValue: boolean
}

export interface SubcommandSpec {
  name: string
  flags: FlagSpec[]
}

/** One command as `worldcompute <name> --help` describes it and as its flag table parses it. */
export interface CommandSpec {
  name: string
  summary: string
  help: string
  flags: FlagSpec[]
  subcommands: SubcommandSpec[]
}

/** Words a shell script may hold unquoted; anything else is left out rather than escaped. */
const WORD = /^-{0,2}[a-zA-Z0-9][a-zA-Z0-9-]*$/

function flagsOf (tables: Options[]): FlagSpec[] {
  // every command answers --help (it was just asked), even one that reads it before any table
  const flags = new Map<string, FlagSpec>([['--help', { flag: '--help', takesValue: false }]])
  for (const table of tables) {
    for (const [name, option] of Object.entries(table)) {
      const takesValue = option.type === 'string'
      flags.set(`--${name}`, { flag: `--${name}`, takesValue })
      if (option.short != null) flags.set(`-${option.short}`, { flag: `-${option.short}`, takesValue })
    }
  }
  return [...flags.values()].filter(f => WORD.test(f.flag))
}

/**
 * Runs a command with `--help` and keeps what it prints and the flag tables
 * it parsed with: the flags come from the very definitions the command uses.
 */
async function askHelp (run: Command, argv: string[]): Promise<{ help: string, flags: FlagSpec[] }> {
  const tables: Options[] = []
  const lines: string[] = []
  const quiet: Output = { out: (line) => { lines.push(line) }, err: () => {} }
  observeParse((options) => { tables.push(options) })
  try {
    await run(argv, quiet)
  } finally {
    observeParse(undefined)
  }
  return { help: lines.join('\n'), flags: flagsOf(tables) }
}

/** Subcommands as the usage lines name them: `worldcompute job submit …`, `worldcompute completion bash|zsh`. */
export function subcommandsIn (name: string, helpText: string): string[] {
  const found = new Set<string>()
  for (const line of helpText.split('\n')) {
    const m = /^worldcompute (\S+) ([a-z][a-z0-9|-]*)(?:\s|$)/.exec(line)
    if (m?.[1] !== name) continue
    for (const word of m[2].split('|')) if (WORD.test(word)) found.add(word)
  }
  return [...found]
}

/** Every command of the table, its help text, subcommands and flags, in the table's order. */
export async function describeCommands (commands: Commands): Promise<CommandSpec[]> {
  const specs: CommandSpec[] = []
  for (const [name, command] of Object.entries(commands)) {
    if (!WORD.test(name)) continue
    const run = await command.load()
    const top = await askHelp(run, ['--help'])
    const subcommands: SubcommandSpec[] = []
    for (const sub of subcommandsIn(name, top.help)) {
      subcommands.push({ name: sub, flags: (await askHelp(run, [sub, '--help'])).flags })
    }
    specs.push({ name, summary: command.summary, help: top.help, flags: top.flags, subcommands })
  }
  return specs
}

/** What `worldcompute` itself answers before any command (src/cli/cli.ts). */
const TOP_LEVEL_WORDS = ['help', '--help', '--version', '--log-format']

function words (flags: FlagSpec[], valued: boolean | undefined = undefined): string {
  return flags.filter(f => valued == null || f.takesValue === valued).map(f => f.flag).join(' ')
}

/** One `case` branch per (command, subcommand): the flags to offer and those whose next word is a value. */
function caseBranches (specs: CommandSpec[], branch: (pattern: string, flags: FlagSpec[], subs: string[]) => string): string {
  const out: string[] = []
  for (const spec of specs) {
    for (const sub of spec.subcommands) out.push(branch(`${spec.name}/${sub.name}`, sub.flags, []))
    out.push(branch(`${spec.name}/*`, spec.flags, spec.subcommands.map(s => s.name)))
  }
  return out.join('\n')
}

export function bashScript (specs: CommandSpec[]): string {
  const top = [...specs.map(s => s.name), ...TOP_LEVEL_WORDS].join(' ')
  const branches = caseBranches(specs, (pattern, flags, subs) =>
    `    ${pattern}) subs="${subs.join(' ')}"; flags="${words(flags)}"; valued="${words(flags, true)}" ;;`)
  return `# bash completion for worldcompute ${VERSION}, printed by \`worldcompute completion bash\`
_worldcompute() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local cmd="\${COMP_WORDS[1]}" sub="" subs="" flags="" valued=""
  COMPREPLY=()
  if [ "$COMP_CWORD" -le 1 ]; then
    COMPREPLY=($(compgen -W "${top}" -- "$cur"))
    return 0
  fi
  if [ "$COMP_CWORD" -gt 2 ]; then sub="\${COMP_WORDS[2]}"; fi
  case "$cmd/$sub" in
${branches}
  esac
  # the value of a flag such as --data-dir: the shell's own completion (files)
  if [ -n "$valued" ] && [[ " $valued " == *" $prev "* ]]; then return 0; fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  elif [ "$COMP_CWORD" -eq 2 ] && [ -n "$subs" ]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  fi
  return 0
}
complete -o default -F _worldcompute worldcompute
`
}

function zshQuote (s: string): string {
  return `'${s.replaceAll('\'', '\'\\\'\'')}'`
}

export function zshScript (specs: CommandSpec[]): string {
  const described = specs.map(s => `    ${zshQuote(`${s.name}:${s.summary}`)}`).join('\n')
  const branches = caseBranches(specs, (pattern, flags, subs) =>
    `    ${pattern}) subs=(${subs.join(' ')}); flags=(${words(flags)}); valued=(${words(flags, true)}) ;;`)
  return `#compdef worldcompute
# zsh completion for worldcompute ${VERSION}, printed by \`worldcompute completion zsh\`
_worldcompute() {
  local -a commands subs flags valued
  commands=(
${described}
  )
  if (( CURRENT == 2 )); then
    _describe -t commands 'worldcompute command' commands
    compadd -- ${TOP_LEVEL_WORDS.join(' ')}
    return
  fi
  local cmd=\${words[2]} sub=''
  if (( CURRENT > 3 )); then sub=\${words[3]}; fi
  case "$cmd/$sub" in
${branches}
  esac
  # the value of a flag such as --data-dir: files
  if (( \${valued[(Ie)\${words[CURRENT-1]}]} )); then _files; return; fi
  if [[ \${words[CURRENT]} == -* ]]; then compadd -a flags; return; fi
  if (( CURRENT == 3 && \${#subs} > 0 )); then compadd -a subs; return; fi
  _files
}
if [[ "\${funcstack[1]}" == _worldcompute ]]; then _worldcompute "$@"; else compdef _worldcompute worldcompute; fi
`
}

/** `worldcompute completion bash|zsh`, over the command table it completes. */
export function completionCommand (commands: Commands): Command {
  return async (argv, o) => {
    const { values, positionals } = parse(argv, { help: commonOptions.help }, 'completion')
    if (values.help) { o.out(help); return 0 }
    const [shell, ...rest] = positionals
    if ((shell !== 'bash' && shell !== 'zsh') || rest.length > 0) {
      throw new UsageError(`completion: give one shell, bash or zsh${positionals.length > 0 ? `, got "${positionals.join(' ')}"` : ''}`)
    }
    const specs = await describeCommands(commands)
    o.out((shell === 'bash' ? bashScript(specs) : zshScript(specs)).trimEnd())
    return 0
  }
}
