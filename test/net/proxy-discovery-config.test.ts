/**
 * `--proxy-pac URL` and config.json "proxyPac": the flag wins over the file,
 * only http://, https:// and file:// are accepted (a ConfigError naming
 * where the value came from otherwise), and `worldcompute config` shows the
 * URL with any credentials replaced.
 */
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { describeDaemonConfig, loadDaemonConfig } from '../../src/config/config.ts'
import { dataDirPaths } from '../../src/config/data-dir.ts'
import { ConfigError } from '../../src/core/errors.ts'
import { tempDir } from '../helpers/mesh.ts'

const root = tempDir('wc-pac-config-')
let count = 0
after(() => { root.cleanup() })

function dataDir (config?: unknown): string {
  const dir = join(root.path, `d${++count}`)
  mkdirSync(dir)
  if (config !== undefined) writeFileSync(dataDirPaths(dir).configFile, JSON.stringify(config))
  return dir
}

describe('proxyPac configuration', () => {
  it('takes --proxy-pac over config.json "proxyPac", and the file when no flag is given', () => {
    const dir = dataDir({ proxyPac: 'http://pac.corp.example/file.pac' })
    assert.deepEqual(loadDaemonConfig({ dataDir: dir, proxyPac: 'https://pac.corp.example/flag.pac' }, {}).proxyPac, { url: 'https://pac.corp.example/flag.pac', source: 'flag' })
    assert.deepEqual(loadDaemonConfig({ dataDir: dir }, {}).proxyPac, { url: 'http://pac.corp.example/file.pac', source: 'config' })
    assert.equal(loadDaemonConfig({ dataDir: dataDir() }, {}).proxyPac, undefined)
  })

  it('accepts file:// and refuses other schemes and non-URLs with a ConfigError naming the flag or key', () => {
    assert.equal(loadDaemonConfig({ dataDir: dataDir(), proxyPac: 'file:///etc/proxy.pac' }, {}).proxyPac?.url, 'file:///etc/proxy.pac')
    assert.throws(() => loadDaemonConfig({ dataDir: dataDir(), proxyPac: 'ftp://pac.example/p.pac' }, {}), (err: unknown) => err instanceof ConfigError && /--proxy-pac: unsupported scheme "ftp:\/\/"/.test(err.message))
    assert.throws(() => loadDaemonConfig({ dataDir: dataDir({ proxyPac: 'not a url' }) }, {}), (err: unknown) => err instanceof ConfigError && /config\.json "proxyPac"/.test(err.message))
    assert.throws(() => loadDaemonConfig({ dataDir: dataDir({ proxyPac: 42 }) }, {}), (err: unknown) => err instanceof ConfigError && /"proxyPac" must be a URL string/.test(err.message))
  })

  it('shows the PAC URL in `worldcompute config` without its credentials', () => {
    const config = loadDaemonConfig({ dataDir: dataDir(), proxyPac: 'http://user:secret@pac.example/p.pac' }, {})
    assert.deepEqual(describeDaemonConfig(config).find(e => e.key === 'proxyPac'), { key: 'proxyPac', value: 'http://***@pac.example/p.pac', source: 'flag' })
  })
})
