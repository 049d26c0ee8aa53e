import { commonOptions, parse } from '../args.ts'
import { ensureDataDir, resolveDataDir } from '../../config/data-dir.ts'
import { peerIdFromKeyFile } from '../../config/peer-id-file.ts'
import { printJson, type Output } from '../output.ts'

export const help = `worldcompute id [--data-dir DIR] [--json]

Prints this node's PeerId, creating its Ed25519 identity in the data directory
on first use. The same data directory always gives the same PeerId.`

export async function run (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, commonOptions, 'id')
  if (values.help) { o.out(help); return 0 }
  const dataDir = resolveDataDir(values['data-dir'])
  // the common case reads the key file alone; creating (or explaining a bad key) needs the crypto stack
  const peerId = peerIdFromKeyFile(ensureDataDir(dataDir).identityKey) ??
    (await (await import('../../config/identity.ts')).loadOrCreateIdentity(dataDir)).peerId.toString()
  if (values.json) printJson(o, { peerId })
  else o.out(peerId)
  return 0
}
