import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { DOH_ENV, loadDaemonConfig } from '../../src/config/config.ts'
import { DEFAULT_DOH_ENDPOINTS, dohEndpointProblem } from '../../src/config/doh.ts'
import { tempDir } from '../helpers/mesh.ts'

describe('DoH endpoints in the daemon config: --doh > WORLDCOMPUTE_DOH > config.json "doh" > built-in', () => {
  const dirs: Array<ReturnType<typeof tempDir>> = []
  const fresh = (): string => { const d = tempDir('wc-doh-cfg-'); dirs.push(d); return d.path }
  after(() => { for (const d of dirs) d.cleanup() })
  const withFile = (doh: unknown): string => {
    const dir = fresh()
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ doh }))
    return dir
  }

  it('takes the flag over the environment and the file', () => {
    const dataDir = withFile(['https://192.0.2.3/dns-query'])
    const c = loadDaemonConfig({ dataDir, doh: ['https://192.0.2.1/dns-query'] }, { [DOH_ENV]: 'https://192.0.2.2/dns-query' })
    assert.deepEqual(c.doh, ['https://192.0.2.1/dns-query'])
    assert.equal(c.dohSource, 'flag')
  })

  it('takes the environment (comma-separated) over the file', () => {
    const dataDir = withFile(['https://192.0.2.3/dns-query'])
    const c = loadDaemonConfig({ dataDir }, { [DOH_ENV]: 'https://192.0.2.2/dns-query, https://192.0.2.4/dns-query' })
    assert.deepEqual(c.doh, ['https://192.0.2.2/dns-query', 'https://192.0.2.4/dns-query'])
    assert.equal(c.dohSource, 'env')
  })

  it('takes the file over the built-in list, and the built-in list last', () => {
    const c = loadDaemonConfig({ dataDir: withFile(['https://192.0.2.3/dns-query']) }, {})
    assert.deepEqual([c.doh, c.dohSource], [['https://192.0.2.3/dns-query'], 'file'])
    const d = loadDaemonConfig({ dataDir: fresh() }, {})
    assert.deepEqual([d.doh, d.dohSource], [[...DEFAULT_DOH_ENDPOINTS], 'default'])
  })

  it('refuses a bad endpoint, naming where it came from', () => {
    const dataDir = fresh()
    assert.throws(() => loadDaemonConfig({ dataDir, doh: ['http://192.0.2.1/dns-query'] }, {}), /--doh.*http:\/\/192\.0\.2\.1.*https:\/\//)
    assert.throws(() => loadDaemonConfig({ dataDir }, { [DOH_ENV]: 'not a url' }), /WORLDCOMPUTE_DOH.*not a URL/)
    assert.throws(() => loadDaemonConfig({ dataDir: withFile('https://192.0.2.1/dns-query') }, {}), /"doh" must be an array/)
  })

  it('allows plain http only to this machine', () => {
    assert.equal(dohEndpointProblem('http://127.0.0.1:8053/dns-query'), undefined)
    assert.equal(dohEndpointProblem('http://[::1]:8053/dns-query'), undefined)
    assert.notEqual(dohEndpointProblem('http://192.0.2.1/dns-query'), undefined)
    assert.equal(dohEndpointProblem('https://dns.example/dns-query'), undefined)
  })
})
