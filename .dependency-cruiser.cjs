/**
 * The layering rule of src/ (shared/docs/style.md): a folder imports only the
 * folders listed for it below, all of them lower down. Two stacks meet at the
 * top, in the composition root:
 *
 *   the node       core → config, log → codec, executor → protocols, net → broker, donor, relay, doctor ─┐
 *   the local API  core → config, log → api → cli (flags, the API client, rendering) ─────────────────────┴→ daemon
 *   metrics        core → config, log → metrics (Prometheus, fed by the daemon through narrow interfaces) ──→ daemon
 *
 * `daemon` is the composition root and the program's entry (daemon/main.ts):
 * it wires net, roles and the API, and holds the commands that run the stack
 * (daemon/commands/). The CLI talks to a daemon only through the API client,
 * so it never reaches the network layer, directly or through another folder
 * (`cli-not-net` follows every path). Checked by `npm test` (and so by CI).
 */
const layers = {
  core: [],
  config: ['core'],
  log: ['core'],
  codec: ['core'],
  executor: ['core', 'config', 'log'],
  protocols: ['core', 'config', 'log', 'codec'],
  net: ['core', 'config', 'log', 'codec'],
  broker: ['core', 'config', 'log', 'codec', 'executor', 'protocols', 'net'],
  donor: ['core', 'config', 'log', 'codec', 'executor', 'protocols', 'net'],
  relay: ['core', 'config', 'log', 'codec', 'protocols', 'net'],
  doctor: ['core', 'config', 'log', 'codec', 'protocols', 'net'],
  metrics: ['core', 'config', 'log'],
  api: ['core', 'config', 'log'],
  cli: ['core', 'config', 'log', 'api'],
  daemon: ['core', 'config', 'log', 'codec', 'executor', 'protocols', 'net', 'broker', 'donor', 'relay', 'doctor', 'metrics', 'api', 'cli']
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
    comment: 'the CLI reaches a daemon only through the API client: no path of imports from src/cli/ leads to the network layer or js-libp2p',
    severity: 'error',
    from: { path: '^src/cli/' },
    to: { path: '^src/net/|(^|/)node_modules/libp2p/', reachable: true }
  },
  {
    name: 'api-not-net',
    comment: 'the local API (server, routes, client) is shared with the CLI: it knows the daemon only through its handlers',
    severity: 'error',
    from: { path: '^src/api/' },
    to: { path: '^src/net/|(^|/)node_modules/libp2p/', reachable: true }
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
    enhancedResolveOptions: { extensions: ['.ts', '.js'], exportsFields: ['exports'], conditionNames: ['import', 'node', 'default'] }
  }
}
