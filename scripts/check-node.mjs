// Fails fast, with a fix, when npm scripts run on a Node older than the pinned 24:
// a clone runs its TypeScript sources directly, through Node 24's type stripping.
// (An installed package runs the built JavaScript and needs only package.json's
// "engines" version; bin/worldcompute checks that one.)
const major = Number(process.versions.node.split('.')[0])
if (major < 24) {
  process.stderr.write(`worldcompute needs Node.js >= 24 to run from a clone (running ${process.version} from ${process.execPath}); run \`npm install\` to fetch the pinned runtime (the "node" dev dependency)\n`)
  process.exit(1)
}
