/**
 * PAC files in the QuickJS sandbox (src/net/pac.ts): answers parsed into
 * proxy candidates in order, and hostile PACs (throws, loops, allocates
 * without end, answers garbage or a huge string) ending as named errors with
 * stable codes within the time limit, never a crash, and leaving the sandbox
 * usable for the next question.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { PacAnswerError, PacEvaluationError, PacEvaluator, PacScriptError, PacTimeoutError, parsePacAnswer, type PacRoute } from '../../src/net/pac.ts'

function describeRoutes (routes: PacRoute[]): string[] {
  return routes.map(r => r.type === 'direct' ? 'DIRECT' : `${r.spec.kind}://${r.spec.host}:${r.spec.port}`)
}

describe('parsePacAnswer', () => {
  it('turns PROXY, SOCKS5, HTTPS and DIRECT into candidates in the order given', () => {
    const routes = parsePacAnswer('PROXY 10.0.0.1:3128; SOCKS5 10.0.0.2:1080; HTTPS proxy.example:8443; DIRECT', 'test.pac')
    assert.deepEqual(describeRoutes(routes), ['http://10.0.0.1:3128', 'socks5://10.0.0.2:1080', 'https://proxy.example:8443', 'DIRECT'])
  })

  it('gives each keyword its default port when the answer names none', () => {
    assert.deepEqual(describeRoutes(parsePacAnswer('PROXY p1;HTTPS p2 ; SOCKS p3', 'test.pac')), ['http://p1:80', 'https://p2:443', 'socks5://p3:1080'])
  })

  it('records the PAC as the source of every proxy it names', () => {
    const [route] = parsePacAnswer('PROXY 10.0.0.1:3128', 'http://wpad.corp.example/wpad.dat')
    assert.equal(route.type === 'proxy' ? route.spec.source : undefined, 'PAC http://wpad.corp.example/wpad.dat')
  })

  it('skips entries it cannot use (SOCKS4, unknown keywords) and keeps the rest', () => {
    assert.deepEqual(describeRoutes(parsePacAnswer('SOCKS4 10.0.0.9:1080; BOGUS x; PROXY 10.0.0.1:3128', 'test.pac')), ['http://10.0.0.1:3128'])
  })

  it('rejects an answer that names nothing usable with PAC_ANSWER_INVALID', () => {
    for (const answer of ['', 'nonsense', 'SOCKS4 10.0.0.9:1080', 'PROXY']) {
      assert.throws(() => parsePacAnswer(answer, 'test.pac'), (err: unknown) => err instanceof PacAnswerError && err.code === 'PAC_ANSWER_INVALID', answer)
    }
  })

  it('rejects an answer that is not a string', () => {
    for (const answer of [42, null, undefined, { a: 1 }]) {
      assert.throws(() => parsePacAnswer(answer, 'test.pac'), PacAnswerError)
    }
  })

  it('rejects an answer longer than the limit', () => {
    const huge = Array.from({ length: 2000 }, (_, i) => `PROXY 10.0.${i % 250}.1:3128`).join('; ')
    assert.throws(() => parsePacAnswer(huge, 'test.pac', 4096), (err: unknown) => err instanceof PacAnswerError && /at most 4096/.test(err.message))
  })
})

describe('PacEvaluator', () => {
  const PAC = `
    function FindProxyForURL(url, host) {
      if (host === 'loop') { while (true) {} }
      if (host === 'grow') { var a = []; while (true) a.push(new Array(1000).join('x') + a.length) }
      if (host === 'throw') throw new Error('boom from the PAC')
      if (host === 'number') return 42
      if (host === 'huge') { var s = 'PROXY a:1;'; while (s.length < 100000) s += s; return s }
      if (shExpMatch(url, 'https://*')) return 'PROXY 10.0.0.1:3128; DIRECT'
      if (dnsDomainIs(host, '.corp.example')) return 'DIRECT'
      return 'SOCKS5 10.0.0.2:1080'
    }`

  it('asks FindProxyForURL with the URL and host given, using the PAC helper functions', async () => {
    const pac = await PacEvaluator.create(PAC, { source: 'test.pac' })
    try {
      assert.deepEqual(describeRoutes(await pac.findProxy('https://relay.example:443/', 'relay.example')), ['http://10.0.0.1:3128', 'DIRECT'])
      assert.deepEqual(describeRoutes(await pac.findProxy('http://r.corp.example:80/', 'r.corp.example')), ['DIRECT'])
      assert.deepEqual(describeRoutes(await pac.findProxy('http://relay.example:8080/', 'relay.example')), ['socks5://10.0.0.2:1080'])
    } finally {
      pac.close()
    }
  })

  it('ends a PAC that loops with PAC_TIMEOUT near the time limit, and still answers afterwards', async () => {
    const pac = await PacEvaluator.create(PAC, { source: 'test.pac', timeoutMs: 300 })
    try {
      const started = Date.now()
      await assert.rejects(pac.findProxy('https://loop:443/', 'loop'), (err: unknown) => err instanceof PacTimeoutError && err.code === 'PAC_TIMEOUT')
      assert.ok(Date.now() - started < 5_000, `stopped after ${Date.now() - started} ms`)
      assert.deepEqual(describeRoutes(await pac.findProxy('https://relay.example:443/', 'relay.example')), ['http://10.0.0.1:3128', 'DIRECT'])
    } finally {
      pac.close()
    }
  })

  it('ends a PAC that allocates without end with PAC_EVALUATION_FAILED under the memory limit', async () => {
    const pac = await PacEvaluator.create(PAC, { source: 'test.pac', memoryLimitBytes: 8 * 1024 * 1024, timeoutMs: 10_000 })
    try {
      await assert.rejects(pac.findProxy('https://grow:443/', 'grow'), (err: unknown) => err instanceof PacEvaluationError && err.code === 'PAC_EVALUATION_FAILED' && /memory/i.test(err.message))
    } finally {
      pac.close()
    }
  })

  it('reports a PAC that throws as PAC_EVALUATION_FAILED with its message', async () => {
    const pac = await PacEvaluator.create(PAC, { source: 'test.pac' })
    try {
      await assert.rejects(pac.findProxy('https://throw:443/', 'throw'), (err: unknown) => err instanceof PacEvaluationError && /boom from the PAC/.test(err.message))
    } finally {
      pac.close()
    }
  })

  it('reports a non-string or huge answer as PAC_ANSWER_INVALID', async () => {
    const pac = await PacEvaluator.create(PAC, { source: 'test.pac' })
    try {
      await assert.rejects(pac.findProxy('https://number:443/', 'number'), PacAnswerError)
      await assert.rejects(pac.findProxy('https://huge:443/', 'huge'), PacAnswerError)
    } finally {
      pac.close()
    }
  })

  it('refuses a script that does not compile or defines no FindProxyForURL with PAC_SCRIPT_INVALID', async () => {
    for (const script of ['function FindProxyForURL(url, host) { return ', 'var x = 1', '<html>not a PAC</html>']) {
      await assert.rejects(PacEvaluator.create(script, { source: 'bad.pac' }), (err: unknown) => err instanceof PacScriptError && err.code === 'PAC_SCRIPT_INVALID', script)
    }
  })

  it('answers myIpAddress() from this host, never by asking a server', async () => {
    const pac = await PacEvaluator.create('function FindProxyForURL(u, h) { return "PROXY " + myIpAddress() + ":3128" }', { source: 'ip.pac', myIpAddress: () => '192.0.2.44' })
    try {
      assert.deepEqual(describeRoutes(await pac.findProxy('https://x:443/', 'x')), ['http://192.0.2.44:3128'])
    } finally {
      pac.close()
    }
  })
})

describe('parseProxyUrl with a port equal to the scheme default', () => {
  it('keeps an explicit :80 on http:// and :443 on https:// instead of the proxy default', async () => {
    const { parseProxyUrl } = await import('../../src/net/proxy-env.ts')
    assert.equal(parseProxyUrl('http://proxy.example:80', 'HTTPS_PROXY').port, 80)
    assert.equal(parseProxyUrl('https://u:p@proxy.example:443', 'HTTPS_PROXY').port, 443)
    assert.equal(parseProxyUrl('http://proxy.example', 'HTTPS_PROXY').port, 1080)
  })
})
