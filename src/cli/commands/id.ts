import { commonOptions, parse } from '../args.ts'
import { resolveDataDir } from '../../config/data-dir.ts'
import { loadOrCreateIdentity } from '../../config/identity.ts'
import { printJson, type Output } from '../output.ts'

export const help = `worldcompute id [--data-dir DIR] [--json]

Prints this node's PeerId, creating its Ed25519 identity in the data directory
on first use. The same data directory always gives the same PeerId.`

export async function run (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, commonOptions, 'id')
  if (values.help) { o.out(help); return 0 }
  const identity = await loadOrCreateIdentity(resolveDataDir(values['data-dir']))
  if (values.json) printJson(o, { peerId: identity.peerId.toString() })
  else o.out(identity.peerId.toString())
  return 0
}
