// Fails fast, with a fix, when npm scripts run on a Node older than the pinned 24.
const major = Number(process.versions.node.split('.')[0])
if (major < 24) {
  process.stderr.write(`worldcompute needs Node.js >= 24 (running ${process.version} from ${process.execPath}); run \`npm install\` to fetch the pinned runtime (the "node" dev dependency)\n`)
  process.exit(1)
}
