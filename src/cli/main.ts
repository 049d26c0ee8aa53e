// Entry point of the `worldcompute` command (bin/worldcompute runs this on the pinned Node 24).
import { main } from './cli.ts'

process.exitCode = await main(process.argv.slice(2))
