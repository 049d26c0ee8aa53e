/**
 * The layering rule of src/ (shared/docs/style.md): a folder imports only from
 * folders below it. Lowest first:
 *   core → config, log → codec, executor → protocols, net → broker, donor, relay, doctor → api → daemon, cli
 * Checked by `npm test` (and so by CI).
 */
const layers = {
  core: [],
  config: ['core'],
  log: ['core'],
  codec: ['core'],
  executor: ['core', 'config', 'log', 'codec'],
  protocols: ['core', 'config', 'log', 'codec'],
  net: ['core', 'config', 'log', 'codec', 'protocols'],
  broker: ['core', 'config', 'log', 'codec', 'executor', 'protocols', 'net'],
  donor: ['core', 'config', 'log', 'codec', 'executor', 'protocols', 'net'],
  relay: ['core', 'config', 'log', 'codec', 'protocols', 'net'],
  doctor: ['core', 'config', 'log', 'codec', 'protocols', 'net'],
  api: ['core', 'config', 'log'],
  daemon: ['core', 'config', 'log', 'codec', 'executor', 'protocols', 'net', 'broker', 'donor', 'relay', 'doctor', 'api'],
  cli: ['core', 'config', 'log', 'api', 'daemon']
}

const forbidden = Object.entries(layers).map(([layer, allowed]) => ({
  name: `layer-${layer}`,
  comment: `src/${layer}/ may import only from: ${allowed.length > 0 ? allowed.join(', ') : '(nothing else in src)'}`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: {
    path: '^src/([^/]+)/',
    pathNot: [`^src/(${[layer, ...allowed].join('|')})/`]
  }
}))

forbidden.push(
  {
    name: 'cli-not-net',
    comment: 'the CLI reaches the daemon only through the API client, never the network layer',
    severity: 'error',
    from: { path: '^src/cli/' },
    to: { path: '^src/net/' }
  },
  {
    name: 'executor-not-libp2p',
    comment: 'the WASM executor runs in its own process and never touches libp2p',
    severity: 'error',
    from: { path: '^src/executor/' },
    to: { path: '(^|/)node_modules/(libp2p|@libp2p|@chainsafe)/' }
  },
  {
    name: 'no-circular',
    severity: 'error',
    from: {},
    to: { circular: true }
  }
)

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] }
  }
}
