import { commonOptions, parse, UsageError } from '../../cli/args.ts'
import { validateEvidence } from '../../doctor/evidence.ts'
import { printJson, type Output } from '../../cli/output.ts'
import { renderEvidenceValidation } from './render-doctor.ts'

export const help = `worldcompute evidence validate PATH [--json]

Checks an evidence bundle (what \`worldcompute doctor --evidence DIR\` writes):
PATH is one bundle folder (…/phase1/firewall-traversal/<UTC time>/) or the
DIR given to --evidence (every bundle under it). Required files (run.log,
metadata.json, results.json, trace.jsonl, index.md), their schema, sizes
(each under 10 MB) and that no credentials are left in a URL. Says what is
wrong; exit code 0 when every bundle is valid, 1 otherwise.`

export async function run (argv: string[], o: Output): Promise<number> {
  const { values, positionals } = parse(argv, commonOptions, 'evidence')
  if (values.help) { o.out(help); return 0 }
  const [sub, path, ...rest] = positionals
  if (sub == null) throw new UsageError('evidence: give a subcommand; subcommands: validate (`worldcompute evidence validate PATH`)')
  if (sub !== 'validate') throw new UsageError(`evidence: unknown subcommand "${sub}"; subcommands: validate (\`worldcompute evidence validate PATH\`)`)
  if (path == null || rest.length > 0) throw new UsageError('evidence validate takes exactly one PATH (a bundle folder or the --evidence folder)')
  const results = validateEvidence(path)
  if (values.json) printJson(o, results)
  else renderEvidenceValidation(o, results)
  return results.every(r => r.ok) ? 0 : 1
}
