import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import {
  BOOTSTRAP_ENV,
  DEFAULT_API_PORT,
  DEFAULT_DAEMON_LISTEN,
  DEFAULT_RELAY_LIMITS,
  DEFAULT_RELAY_LISTEN,
  describeDaemonConfig,
  loadDaemonConfig,
  loadRelayConfig,
  parseBytes,
  parseDurationMs,
  parsePort,
  splitList
} from '../../src/config/config.ts'
import { DATA_DIR_ENV, dataDirPaths, resolveDataDir } from '../../src/config/data-dir.ts'
import { CONFIG_FILE_KEYS, unknownConfigKeys, unknownKeyMessage } from '../../src/config/config-keys.ts'
import { ConfigError, InvalidMultiaddrError } from '../../src/core/errors.ts'

const PEER_A = '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'
const ADDR_A = `/ip4/127.0.0.1/tcp/4001/p2p/${PEER_A}`

let root: string
let PEER_B: string
let PEER_C: string
let dirCounter = 0

/** A fresh, empty data directory under the test's temp root. */
function freshDir (): string {
  const dir = join(root, `d${dirCounter++}`)
  mkdirSync(dir)
  return dir
}

/** A data directory whose config.json holds `content` (an object is JSON-encoded). */
function dirWithConfig (content: unknown): string {
  const dir = freshDir()
  writeFileSync(dataDirPaths(dir).configFile, typeof content === 'string' ? content : JSON.stringify(content))
  return dir
}

function assertInvalidMultiaddr (fn: () => unknown, source: string, value: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidMultiaddrError, `expected InvalidMultiaddrError, got ${String(err)}`)
    assert.ok(err instanceof ConfigError)
    assert.equal(err.source, source)
    assert.equal(err.value, value)
    assert.equal(err.code, 'CONFIG_INVALID')
    assert.ok(err.message.includes(source), `message should name ${source}: ${err.message}`)
    assert.ok(err.message.includes(value), `message should name ${value}: ${err.message}`)
    return true
  })
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'wc-config-test-'))
  PEER_B = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  PEER_C = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
})

after(() => {
  rmSync(root, { recursive: true, force: true })
})

describe('resolveDataDir', () => {
  it('uses the --data-dir flag over WORLDCOMPUTE_DATA_DIR', () => {
    const flag = join(root, 'from-flag')
    assert.equal(resolveDataDir(flag, { [DATA_DIR_ENV]: join(root, 'from-env') }), flag)
  })

  it('uses WORLDCOMPUTE_DATA_DIR when no flag is given', () => {
    const fromEnv = join(root, 'from-env')
    assert.equal(resolveDataDir(undefined, { [DATA_DIR_ENV]: fromEnv }), fromEnv)
  })

  it('treats an empty flag as absent and falls back to the environment', () => {
    const fromEnv = join(root, 'from-env')
    assert.equal(resolveDataDir('', { [DATA_DIR_ENV]: fromEnv }), fromEnv)
  })

  it('falls back to ~/.worldcompute when neither flag nor environment names a directory', () => {
    assert.equal(resolveDataDir(undefined, {}), join(homedir(), '.worldcompute'))
    assert.equal(resolveDataDir(undefined, { [DATA_DIR_ENV]: '' }), join(homedir(), '.worldcompute'))
  })

  it('makes a relative directory absolute', () => {
    assert.equal(resolveDataDir('some/rel', {}), resolve('some/rel'))
    assert.equal(resolveDataDir(undefined, { [DATA_DIR_ENV]: 'other/rel' }), resolve('other/rel'))
  })
})

describe('splitList', () => {
  it('splits the environment form on commas and whitespace, dropping empty entries', () => {
    assert.deepEqual(splitList(' /a/1, /b/2 ,,/c/3\n/d/4 '), ['/a/1', '/b/2', '/c/3', '/d/4'])
  })
})

describe('loadDaemonConfig bootstrap', () => {
  it('uses the --bootstrap flag over the environment and the config file', () => {
    const dir = dirWithConfig({ bootstrap: [`/ip4/127.0.0.1/tcp/4003/p2p/${PEER_C}`] })
    const config = loadDaemonConfig(
      { dataDir: dir, bootstrap: [ADDR_A] },
      { [BOOTSTRAP_ENV]: `/ip4/127.0.0.1/tcp/4002/p2p/${PEER_B}` }
    )
    assert.deepEqual(config.bootstrap.map(String), [ADDR_A])
    assert.equal(config.bootstrapSource, 'flag')
  })

  it('uses comma-separated WORLDCOMPUTE_BOOTSTRAP over the config file when no flag is given', () => {
    const dir = dirWithConfig({ bootstrap: [`/ip4/127.0.0.1/tcp/4003/p2p/${PEER_C}`] })
    const b = `/ip4/127.0.0.1/tcp/4002/p2p/${PEER_B}`
    const config = loadDaemonConfig({ dataDir: dir }, { [BOOTSTRAP_ENV]: `${ADDR_A}, ${b}` })
    assert.deepEqual(config.bootstrap.map(String), [ADDR_A, b])
    assert.equal(config.bootstrapSource, 'env')
  })

  it('treats an empty --bootstrap list as absent and falls through to the environment', () => {
    const dir = freshDir()
    const config = loadDaemonConfig({ dataDir: dir, bootstrap: [] }, { [BOOTSTRAP_ENV]: ADDR_A })
    assert.deepEqual(config.bootstrap.map(String), [ADDR_A])
    assert.equal(config.bootstrapSource, 'env')
  })

  it('uses config.json "bootstrap" when neither flag nor environment gives one', () => {
    const c = `/ip4/127.0.0.1/tcp/4003/p2p/${PEER_C}`
    const dir = dirWithConfig({ bootstrap: [c] })
    const config = loadDaemonConfig({ dataDir: dir }, { [BOOTSTRAP_ENV]: '' })
    assert.deepEqual(config.bootstrap.map(String), [c])
    assert.equal(config.bootstrapSource, 'file')
  })

  it('reads the config file of the data dir named by WORLDCOMPUTE_DATA_DIR', () => {
    const c = `/ip4/127.0.0.1/tcp/4003/p2p/${PEER_C}`
    const dir = dirWithConfig({ bootstrap: [c] })
    const config = loadDaemonConfig({}, { [DATA_DIR_ENV]: dir })
    assert.equal(config.dataDir, dir)
    assert.deepEqual(config.bootstrap.map(String), [c])
    assert.equal(config.bootstrapSource, 'file')
  })

  it('falls back to the built-in default (empty) when nothing gives a bootstrap list', () => {
    const config = loadDaemonConfig({ dataDir: freshDir() }, {})
    assert.deepEqual(config.bootstrap, [])
    assert.equal(config.bootstrapSource, 'default')
  })

  it('returns a frozen config', () => {
    const config = loadDaemonConfig({ dataDir: freshDir(), bootstrap: [ADDR_A] }, {})
    assert.ok(Object.isFrozen(config))
    assert.ok(Object.isFrozen(config.bootstrap))
  })

  it('rejects a bad --bootstrap value naming the flag and the value', () => {
    assertInvalidMultiaddr(
      () => loadDaemonConfig({ dataDir: freshDir(), bootstrap: ['/ip4/999.1.1.1/tcp/4001'] }, {}),
      '--bootstrap', '/ip4/999.1.1.1/tcp/4001'
    )
  })

  it('rejects a --bootstrap value that does not start with a slash, explaining the form', () => {
    assert.throws(
      () => loadDaemonConfig({ dataDir: freshDir(), bootstrap: ['127.0.0.1:4001'] }, {}),
      (err: unknown) => err instanceof InvalidMultiaddrError &&
        err.message.includes('--bootstrap') && err.message.includes('127.0.0.1:4001') && err.message.includes('starts with "/"')
    )
  })

  it('rejects a bad WORLDCOMPUTE_BOOTSTRAP value naming the variable and the value', () => {
    assertInvalidMultiaddr(
      () => loadDaemonConfig({ dataDir: freshDir() }, { [BOOTSTRAP_ENV]: `${ADDR_A},/foo/bar` }),
      'WORLDCOMPUTE_BOOTSTRAP', '/foo/bar'
    )
  })

  it('rejects a bad config.json "bootstrap" value naming the file key and the value', () => {
    const dir = dirWithConfig({ bootstrap: ['/ip4/not-an-ip/tcp/4001'] })
    assertInvalidMultiaddr(
      () => loadDaemonConfig({ dataDir: dir }, {}),
      'config.json "bootstrap"', '/ip4/not-an-ip/tcp/4001'
    )
  })

  it('rejects a bootstrap address without /p2p/ because the relay could not be authenticated', () => {
    assert.throws(
      () => loadDaemonConfig({ dataDir: freshDir(), bootstrap: [ADDR_A, '/ip4/127.0.0.1/tcp/4001'] }, {}),
      (err: unknown) => {
        assert.ok(err instanceof InvalidMultiaddrError)
        assert.equal(err.source, '--bootstrap')
        assert.equal(err.value, '/ip4/127.0.0.1/tcp/4001')
        assert.match(err.message, /\/p2p\//)
        return true
      }
    )
  })

  it('rejects an environment bootstrap address without /p2p/ naming the variable', () => {
    assertInvalidMultiaddr(
      () => loadDaemonConfig({ dataDir: freshDir() }, { [BOOTSTRAP_ENV]: '/ip4/127.0.0.1/tcp/4001' }),
      'WORLDCOMPUTE_BOOTSTRAP', '/ip4/127.0.0.1/tcp/4001'
    )
  })
})

describe('loadDaemonConfig config file', () => {
  it('rejects a malformed config.json with a ConfigError naming the file', () => {
    const dir = dirWithConfig('{ "bootstrap": [ ')
    const file = dataDirPaths(dir).configFile
    assert.throws(
      () => loadDaemonConfig({ dataDir: dir }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes(file) && /not valid JSON/.test(err.message)
    )
  })

  it('rejects a config.json that is not a JSON object, naming the file', () => {
    const dir = dirWithConfig('[1, 2]')
    const file = dataDirPaths(dir).configFile
    assert.throws(
      () => loadDaemonConfig({ dataDir: dir }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes(file) && /JSON object/.test(err.message)
    )
  })

  it('rejects a config.json "bootstrap" that is not an array of strings, naming the key', () => {
    const dir = dirWithConfig({ bootstrap: ADDR_A })
    assert.throws(
      () => loadDaemonConfig({ dataDir: dir }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes('"bootstrap"') && err.message.includes(dataDirPaths(dir).configFile)
    )
  })

  it('rejects a config.json "apiPort" that is not a number', () => {
    const dir = dirWithConfig({ apiPort: '8080' })
    assert.throws(
      () => loadDaemonConfig({ dataDir: dir }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes('"apiPort"')
    )
  })
})

describe('loadDaemonConfig apiPort', () => {
  it('uses the --api-port flag over the environment and the config file', () => {
    const dir = dirWithConfig({ apiPort: 3456 })
    const config = loadDaemonConfig({ dataDir: dir, apiPort: '1234' }, { WORLDCOMPUTE_API_PORT: '2345' })
    assert.equal(config.apiPort, 1234)
    assert.equal(config.apiPortSource, 'flag')
  })

  it('uses WORLDCOMPUTE_API_PORT over the config file', () => {
    const dir = dirWithConfig({ apiPort: 3456 })
    const config = loadDaemonConfig({ dataDir: dir }, { WORLDCOMPUTE_API_PORT: '2345' })
    assert.equal(config.apiPort, 2345)
    assert.equal(config.apiPortSource, 'env')
  })

  it('uses config.json "apiPort" when neither flag nor environment gives one', () => {
    const dir = dirWithConfig({ apiPort: 3456 })
    const config = loadDaemonConfig({ dataDir: dir }, {})
    assert.equal(config.apiPort, 3456)
    assert.equal(config.apiPortSource, 'file')
  })

  it('defaults to port 7767', () => {
    const config = loadDaemonConfig({ dataDir: freshDir() }, {})
    assert.equal(DEFAULT_API_PORT, 7767)
    assert.equal(config.apiPort, 7767)
    assert.equal(config.apiPortSource, 'default')
  })

  it('accepts port 0 so the daemon can pick a free port', () => {
    assert.equal(loadDaemonConfig({ dataDir: freshDir(), apiPort: '0' }, {}).apiPort, 0)
  })

  for (const bad of ['70000', '-1', 'abc', '80.5']) {
    it(`rejects --api-port "${bad}" naming the flag and the value`, () => {
      assert.throws(
        () => loadDaemonConfig({ dataDir: freshDir(), apiPort: bad }, {}),
        (err: unknown) => err instanceof ConfigError && err.message.includes('--api-port') && err.message.includes(`"${bad}"`)
      )
    })
  }

  it('rejects an empty --api-port instead of reading it as port 0', () => {
    assert.throws(
      () => loadDaemonConfig({ dataDir: freshDir(), apiPort: '' }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes('--api-port')
    )
  })

  it('rejects an invalid WORLDCOMPUTE_API_PORT naming the variable', () => {
    assert.throws(
      () => loadDaemonConfig({ dataDir: freshDir() }, { WORLDCOMPUTE_API_PORT: '65536' }),
      (err: unknown) => err instanceof ConfigError && err.message.includes('WORLDCOMPUTE_API_PORT') && err.message.includes('65536')
    )
  })

  it('rejects an out-of-range config.json "apiPort" naming the key', () => {
    const dir = dirWithConfig({ apiPort: 99999 })
    assert.throws(
      () => loadDaemonConfig({ dataDir: dir }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes('config.json "apiPort"') && err.message.includes('99999')
    )
  })
})

describe('parsePort', () => {
  it('reads a decimal port from text or a number', () => {
    assert.equal(parsePort('8080', 'x'), 8080)
    assert.equal(parsePort(65535, 'x'), 65535)
  })

  it('rejects blank text rather than reading it as 0', () => {
    assert.throws(() => parsePort('', '--api-port'), ConfigError)
    assert.throws(() => parsePort('  ', '--api-port'), ConfigError)
  })
})

describe('loadDaemonConfig listen', () => {
  it('listens by default on TCP, QUIC and /p2p-circuit', () => {
    const config = loadDaemonConfig({ dataDir: freshDir() }, {})
    const listen = config.listen.map(String)
    assert.ok(listen.includes('/p2p-circuit'), `default listen ${listen.join(' ')} should contain /p2p-circuit`)
    assert.deepEqual(listen, [...DEFAULT_DAEMON_LISTEN])
    assert.equal(config.listenSource, 'default')
  })

  it('replaces the default listen list with the --listen flag', () => {
    const config = loadDaemonConfig({ dataDir: freshDir(), listen: ['/ip4/127.0.0.1/tcp/0'] }, {})
    assert.deepEqual(config.listen.map(String), ['/ip4/127.0.0.1/tcp/0'])
    assert.equal(config.listenSource, 'flag')
  })

  it('uses config.json "listen" when no flag is given', () => {
    const dir = dirWithConfig({ listen: ['/ip4/127.0.0.1/tcp/5555'] })
    const config = loadDaemonConfig({ dataDir: dir }, {})
    assert.deepEqual(config.listen.map(String), ['/ip4/127.0.0.1/tcp/5555'])
    assert.equal(config.listenSource, 'file')
  })

  it('rejects a bad --listen value naming the flag and the value', () => {
    assertInvalidMultiaddr(
      () => loadDaemonConfig({ dataDir: freshDir(), listen: ['/ip4/127.0.0.1/tcp/99999'] }, {}),
      '--listen', '/ip4/127.0.0.1/tcp/99999'
    )
  })
})

describe('parseBytes and parseDurationMs', () => {
  it('parses binary and decimal sizes', () => {
    assert.equal(parseBytes('64MiB', 'x'), 64 * 1024 * 1024)
    assert.equal(parseBytes('1GiB', 'x'), 1024 ** 3)
    assert.equal(parseBytes('128 KiB', 'x'), 128 * 1024)
    assert.equal(parseBytes('2MB', 'x'), 2_000_000)
    assert.equal(parseBytes('131072', 'x'), 131072)
  })

  it('rejects a size it cannot read, naming the source and the value', () => {
    assert.throws(
      () => parseBytes('lots', '--relay-data-limit'),
      (err: unknown) => err instanceof ConfigError && err.message.includes('--relay-data-limit') && err.message.includes('"lots"')
    )
  })

  it('parses durations in hours, minutes, seconds and milliseconds, bare numbers as seconds', () => {
    assert.equal(parseDurationMs('1h', 'x'), 3_600_000)
    assert.equal(parseDurationMs('2m', 'x'), 120_000)
    assert.equal(parseDurationMs('90s', 'x'), 90_000)
    assert.equal(parseDurationMs('500ms', 'x'), 500)
    assert.equal(parseDurationMs('30', 'x'), 30_000)
  })

  it('rejects a duration it cannot read, naming the source and the value', () => {
    assert.throws(
      () => parseDurationMs('1 day', '--relay-duration-limit'),
      (err: unknown) => err instanceof ConfigError && err.message.includes('--relay-duration-limit') && err.message.includes('"1 day"')
    )
  })
})

describe('loadRelayConfig', () => {
  it('uses the relay defaults when nothing is configured', () => {
    const dir = freshDir()
    const config = loadRelayConfig({ dataDir: dir }, {})
    assert.equal(config.dataDir, dir)
    assert.deepEqual(config.listen.map(String), [...DEFAULT_RELAY_LISTEN])
    assert.deepEqual(config.announce, [])
    assert.deepEqual(config.bootstrap, [])
    assert.equal(config.tls, undefined)
    assert.deepEqual(config.limits, DEFAULT_RELAY_LIMITS)
    assert.equal(config.limits.dataLimitBytes, 64 * 1024 * 1024)
    assert.equal(config.limits.durationLimitMs, 60 * 60 * 1000)
  })

  it('rejects --tls-cert without --tls-key', () => {
    assert.throws(
      () => loadRelayConfig({ dataDir: freshDir(), tlsCert: join(root, 'cert.pem') }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes('--tls-cert') && err.message.includes('--tls-key')
    )
  })

  it('rejects --tls-key without --tls-cert', () => {
    assert.throws(
      () => loadRelayConfig({ dataDir: freshDir(), tlsKey: join(root, 'key.pem') }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes('--tls-cert')
    )
  })

  it('adds a /tcp/443/tls/ws listen address when TLS is configured', () => {
    const cert = join(root, 'cert.pem')
    const key = join(root, 'key.pem')
    const config = loadRelayConfig({ dataDir: freshDir(), tlsCert: cert, tlsKey: key }, {})
    const listen = config.listen.map(String)
    assert.ok(listen.includes('/ip4/0.0.0.0/tcp/443/tls/ws'), `listen ${listen.join(' ')} should hold a /tcp/443/tls/ws address`)
    assert.ok(listen.includes('/ip6/::/tcp/443/tls/ws'), `listen ${listen.join(' ')} should hold an IPv6 /tcp/443/tls/ws address`)
    assert.equal(listen.length, DEFAULT_RELAY_LISTEN.length + 2)
    assert.deepEqual(config.tls, { certFile: cert, keyFile: key })
  })

  it('does not add a second secure WebSocket address when --listen already has one', () => {
    const config = loadRelayConfig({
      dataDir: freshDir(),
      listen: ['/ip4/0.0.0.0/tcp/8443/tls/ws'],
      tlsCert: join(root, 'cert.pem'),
      tlsKey: join(root, 'key.pem')
    }, {})
    assert.deepEqual(config.listen.map(String), ['/ip4/0.0.0.0/tcp/8443/tls/ws'])
  })

  it('overrides the data, duration and reservation limits from flags', () => {
    const config = loadRelayConfig({ dataDir: freshDir(), dataLimit: '128MiB', durationLimit: '90s', maxReservations: '10' }, {})
    assert.equal(config.limits.dataLimitBytes, 128 * 1024 * 1024)
    assert.equal(config.limits.durationLimitMs, 90_000)
    assert.equal(config.limits.maxReservations, 10)
    assert.equal(config.limits.maxConnections, DEFAULT_RELAY_LIMITS.maxConnections)
  })

  it('rejects a bad --relay-data-limit naming the flag', () => {
    assert.throws(
      () => loadRelayConfig({ dataDir: freshDir(), dataLimit: '64 potatoes' }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes('--relay-data-limit')
    )
  })

  it('takes --announce addresses and rejects a bad one naming --announce', () => {
    const ok = loadRelayConfig({ dataDir: freshDir(), announce: ['/dns4/relay.example.org/tcp/4001'] }, {})
    assert.deepEqual(ok.announce.map(String), ['/dns4/relay.example.org/tcp/4001'])
    assertInvalidMultiaddr(
      () => loadRelayConfig({ dataDir: freshDir(), announce: ['/ip4/1.2.3/tcp/4001'] }, {}),
      '--announce', '/ip4/1.2.3/tcp/4001'
    )
  })

  it('reads the bootstrap list from WORLDCOMPUTE_BOOTSTRAP and names it when a value is bad', () => {
    const ok = loadRelayConfig({ dataDir: freshDir() }, { [BOOTSTRAP_ENV]: ADDR_A })
    assert.deepEqual(ok.bootstrap.map(String), [ADDR_A])
    assertInvalidMultiaddr(
      () => loadRelayConfig({ dataDir: freshDir() }, { [BOOTSTRAP_ENV]: '/foo/bar' }),
      'WORLDCOMPUTE_BOOTSTRAP', '/foo/bar'
    )
  })

  it('rejects a malformed config.json with a ConfigError naming the file', () => {
    const dir = dirWithConfig('not json')
    assert.throws(
      () => loadRelayConfig({ dataDir: dir }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes(dataDirPaths(dir).configFile)
    )
  })
})

describe('loadDaemonConfig refuseIntercepted', () => {
  it('is off by default, on with --refuse-intercepted or "refuseIntercepted": true in config.json', () => {
    assert.equal(loadDaemonConfig({ dataDir: freshDir() }, {}).refuseIntercepted, false)
    assert.equal(loadDaemonConfig({ dataDir: freshDir(), refuseIntercepted: true }, {}).refuseIntercepted, true)
    assert.equal(loadDaemonConfig({ dataDir: dirWithConfig({ refuseIntercepted: true }) }, {}).refuseIntercepted, true)
  })

  it('rejects a config.json "refuseIntercepted" that is not a boolean, naming the key', () => {
    assert.throws(
      () => loadDaemonConfig({ dataDir: dirWithConfig({ refuseIntercepted: 'yes' }) }, {}),
      (err: unknown) => err instanceof ConfigError && err.message.includes('"refuseIntercepted"')
    )
  })
})

describe('unknown config.json keys', () => {
  it('a mistyped top-level key is reported with the known key it most resembles, and the rest still loads', () => {
    const config = loadDaemonConfig({ dataDir: dirWithConfig({ bootstap: [ADDR_A], apiPort: 7800 }) }, {})
    assert.deepEqual(config.unknownKeys, [{ key: 'bootstap', closest: 'bootstrap' }])
    assert.equal(config.apiPort, 7800)
    assert.equal(config.bootstrap.length, 0)
    assert.equal(config.configFile, join(config.dataDir, 'config.json'))
  })

  it('a key unlike any known one is reported without a suggestion, by the relay too', () => {
    const relay = loadRelayConfig({ dataDir: dirWithConfig({ frobnicate: 1, relayLimits: {} }) }, {})
    assert.deepEqual(relay.unknownKeys, [{ key: 'frobnicate' }])
    assert.deepEqual(unknownConfigKeys({ ApiPort: 1, listen: [] }), [{ key: 'ApiPort', closest: 'apiPort' }])
  })

  it('the warning names the file, the key and the suggestion', () => {
    assert.match(unknownKeyMessage('/d/config.json', { key: 'bootstap', closest: 'bootstrap' }), /\/d\/config\.json.*"bootstap".*did you mean "bootstrap"/)
    assert.match(unknownKeyMessage('/d/config.json', { key: 'x' }), /known keys: bootstrap, doh/)
  })

  it('no config file means no unknown keys', () => {
    assert.deepEqual(loadDaemonConfig({ dataDir: freshDir() }, {}).unknownKeys, [])
  })
})

describe('describeDaemonConfig', () => {
  const entry = (config: ReturnType<typeof loadDaemonConfig>, key: string): { value: unknown, source: string } | undefined =>
    describeDaemonConfig(config).find(e => e.key === key)

  it('names where each value came from: flag, env, file or default', () => {
    const dir = dirWithConfig({ apiPort: 7800, publicRanges: ['10.0.0.0/8'], refuseIntercepted: true })
    const config = loadDaemonConfig({ maxJobMemory: '64MiB' }, { [DATA_DIR_ENV]: dir, [BOOTSTRAP_ENV]: ADDR_A })
    assert.deepEqual(entry(config, 'dataDir'), { key: 'dataDir', value: resolve(dir), source: 'env' })
    assert.deepEqual(entry(config, 'bootstrap'), { key: 'bootstrap', value: [ADDR_A], source: 'env' })
    assert.deepEqual(entry(config, 'apiPort'), { key: 'apiPort', value: 7800, source: 'file' })
    assert.deepEqual(entry(config, 'publicRanges'), { key: 'publicRanges', value: ['10.0.0.0/8'], source: 'file' })
    assert.deepEqual(entry(config, 'refuseIntercepted'), { key: 'refuseIntercepted', value: true, source: 'file' })
    assert.deepEqual(entry(config, 'maxJobMemory'), { key: 'maxJobMemory', value: '64MiB', source: 'flag' })
    assert.deepEqual(entry(config, 'listen')?.source, 'default')
    assert.deepEqual(entry(config, 'maxDeadline'), { key: 'maxDeadline', value: '600s', source: 'default' })
  })

  it('lists every config.json key the daemon reads', () => {
    const keys = describeDaemonConfig(loadDaemonConfig({ dataDir: freshDir() }, {})).map(e => e.key)
    for (const k of CONFIG_FILE_KEYS.filter(k => k.roles.includes('daemon'))) assert.ok(keys.includes(k.key), `shows ${k.key}`)
  })
})

describe('parseBytes with a unit for plain numbers', () => {
  it('counts a plain number in the given unit and a suffixed one in its own', () => {
    assert.equal(parseBytes('64', '--memory', 'mib'), 64 * 1024 * 1024)
    assert.equal(parseBytes('64MiB', '--memory', 'mib'), 64 * 1024 * 1024)
    assert.equal(parseBytes('1GiB', '--memory', 'mib'), 1024 ** 3)
    assert.equal(parseBytes('64', '--relay-data-limit'), 64)
  })
})
