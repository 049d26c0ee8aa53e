import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  bypassesProxy, describeProxyEnvironment, isLoopbackHost, parseNoProxy, parseProxyEnvironment, parseProxyUrl, proxyFor,
  redactCredentials, ProxyConfigError, type ProxyEnvironment
} from '../../src/net/proxy-env.ts'

const direct = (noProxy: string, host: string, port = 443): boolean => bypassesProxy(parseNoProxy(noProxy), host, port)

describe('proxy URLs from the environment', () => {
  it('parses http://user:pass@host:port, keeping the credentials out of the shown URL', () => {
    const p = parseProxyUrl('http://alice:s3cret@10.4.0.1:3128', 'HTTPS_PROXY')
    assert.deepEqual(p, { kind: 'http', host: '10.4.0.1', port: 3128, username: 'alice', password: 's3cret', source: 'HTTPS_PROXY', url: 'http://***@10.4.0.1:3128' })
    assert.ok(!JSON.stringify({ url: p.url, source: p.source }).includes('s3cret'))
  })

  it('percent-decodes the user and password', () => {
    const p = parseProxyUrl('http://me%40corp:p%3Ass%2Fw@proxy.corp:8080', 'HTTPS_PROXY')
    assert.equal(p.username, 'me@corp')
    assert.equal(p.password, 'p:ss/w')
    assert.equal(p.url, 'http://***@proxy.corp:8080')
  })

  it('never shows a password with an unencoded "/", "?" or "#" in the error about the URL', () => {
    for (const sep of ['/', '?', '#']) {
      for (const bad of [`http://u:Zq9${sep}Wv8@proxy.corp:3128`, `u:Zq9${sep}Wv8@10.0.0.1:3128`, `http://DOM\\u:Zq9${sep}Wv8@h:1`]) {
        assert.throws(() => parseProxyUrl(bad, 'HTTPS_PROXY'), (err: Error) => {
          assert.ok(err instanceof ProxyConfigError, String(err))
          assert.ok(!err.message.includes('Zq9') && !err.message.includes('Wv8'), err.message)
          return true
        })
      }
    }
  })

  it('reads socks5:// and socks5h:// with and without credentials', () => {
    assert.deepEqual(parseProxyUrl('socks5://127.0.0.1:1080', 'ALL_PROXY'), { kind: 'socks5', host: '127.0.0.1', port: 1080, source: 'ALL_PROXY', url: 'socks5://127.0.0.1:1080' })
    const h = parseProxyUrl('SOCKS5H://u:p@gw.example:9050', 'all_proxy')
    assert.equal(h.kind, 'socks5h')
    assert.equal(h.username, 'u')
    assert.equal(h.url, 'socks5h://***@gw.example:9050')
  })

  it('takes a URL without a scheme as http://, and uses curl\'s default ports', () => {
    assert.equal(parseProxyUrl('proxy.corp:3128', 'HTTP_PROXY').url, 'http://proxy.corp:3128')
    assert.equal(parseProxyUrl('http://proxy.corp', 'HTTP_PROXY').port, 1080)
    assert.equal(parseProxyUrl('socks5://proxy.corp', 'ALL_PROXY').port, 1080)
    assert.equal(parseProxyUrl('https://proxy.corp', 'HTTPS_PROXY').port, 443)
    assert.equal(parseProxyUrl('http://proxy.corp:3128/', 'HTTP_PROXY').port, 3128)
  })

  it('keeps an IPv6 proxy host without brackets and shows it with them', () => {
    const p = parseProxyUrl('http://[2001:db8::1]:3128', 'HTTPS_PROXY')
    assert.equal(p.host, '2001:db8::1')
    assert.equal(p.url, 'http://[2001:db8::1]:3128')
  })

  it('refuses unsupported schemes, paths and junk, naming the variable and never the password', () => {
    for (const [value, re] of [
      ['socks4://u:hunter2@proxy:1080', /unsupported proxy scheme "socks4:\/\/"/],
      ['ftp://proxy:21', /unsupported proxy scheme/],
      ['http://u:hunter2@proxy:3128/path', /has no path/],
      ['http://u:hunter2@:3128', /not a proxy URL|names no proxy host/],
      ['http://u:hunter2@proxy:99999', /not a proxy URL/]
    ] as const) {
      assert.throws(() => parseProxyUrl(value, 'HTTPS_PROXY'), (err: Error) => {
        assert.ok(err instanceof ProxyConfigError, `${value}: ${String(err)}`)
        assert.match(err.message, /^HTTPS_PROXY: /)
        assert.match(err.message, re)
        assert.ok(!err.message.includes('hunter2'), err.message)
        assert.ok(!String((err.cause as Error | undefined)?.message ?? '').includes('hunter2'))
        return true
      })
    }
  })

  it('redacts user-info in any text', () => {
    assert.equal(redactCredentials('dial via http://bob:pw@10.0.0.1:3128 failed'), 'dial via http://***@10.0.0.1:3128 failed')
    assert.equal(redactCredentials('HTTPS_PROXY=bob:pw@proxy:3128'), 'HTTPS_PROXY=***@proxy:3128')
    assert.equal(redactCredentials('socks5h://u@proxy:1080, http://a:b@c:1'), 'socks5h://***@proxy:1080, http://***@c:1')
    assert.equal(redactCredentials('no credentials http://proxy:3128'), 'no credentials http://proxy:3128')
  })
})

describe('which variable wins', () => {
  it('the lower-case form wins over the upper-case one, as in curl', () => {
    const env = parseProxyEnvironment({ https_proxy: 'http://lower:3128', HTTPS_PROXY: 'http://upper:3128', ALL_PROXY: 'socks5://upper-all:1080', all_proxy: 'socks5://lower-all:1080', NO_PROXY: 'upper.example', no_proxy: 'lower.example' })
    assert.equal(env.https?.host, 'lower')
    assert.equal(env.https?.source, 'https_proxy')
    assert.equal(env.all?.host, 'lower-all')
    assert.equal(env.noProxySource, 'no_proxy')
    assert.deepEqual(env.noProxy, [{ type: 'domain', domain: 'lower.example' }])
  })

  it('an empty lower-case variable switches the proxy off even when the upper-case one is set', () => {
    const env = parseProxyEnvironment({ https_proxy: '', HTTPS_PROXY: 'http://upper:3128' })
    assert.equal(env.https, undefined)
  })

  it('reads the upper-case forms, HTTP_PROXY included (curl ignores it; a daemon has no httpoxy problem)', () => {
    const env = parseProxyEnvironment({ HTTPS_PROXY: 'http://p1:3128', HTTP_PROXY: 'http://p2:3128', ALL_PROXY: 'socks5://p3:1080' })
    assert.deepEqual([env.https?.host, env.http?.host, env.all?.host], ['p1', 'p2', 'p3'])
  })

  it('no variables: no proxy', () => {
    const env = parseProxyEnvironment({ PATH: '/usr/bin' })
    assert.deepEqual(env, { noProxy: [] })
    assert.equal(describeProxyEnvironment(env), 'no proxy in the environment')
  })

  it('wss dials use HTTPS_PROXY then ALL_PROXY; ws dials HTTP_PROXY, then HTTPS_PROXY, then ALL_PROXY; tcp only ALL_PROXY', () => {
    const only443: ProxyEnvironment = parseProxyEnvironment({ HTTPS_PROXY: 'http://u:p@proxy:3128' })
    assert.equal(proxyFor(only443, 'wss', '198.51.100.10', 443)?.host, 'proxy')
    assert.equal(proxyFor(only443, 'ws', '198.51.100.10', 443)?.host, 'proxy', 'a plain WebSocket is a CONNECT tunnel too')
    assert.equal(proxyFor(only443, 'tcp', '198.51.100.10', 4001), undefined, 'HTTPS_PROXY is not used for raw TCP')

    const all = parseProxyEnvironment({ HTTP_PROXY: 'http://h:1', HTTPS_PROXY: 'http://s:2', ALL_PROXY: 'socks5://a:3' })
    assert.equal(proxyFor(all, 'wss', 'relay', 443)?.host, 's')
    assert.equal(proxyFor(all, 'ws', 'relay', 80)?.host, 'h')
    assert.equal(proxyFor(all, 'tcp', 'relay', 4001)?.host, 'a')

    const socksOnly = parseProxyEnvironment({ ALL_PROXY: 'socks5://a:3' })
    assert.equal(proxyFor(socksOnly, 'wss', 'relay', 443)?.host, 'a')
    assert.equal(proxyFor(socksOnly, 'ws', 'relay', 443)?.host, 'a')
    assert.equal(proxyFor(socksOnly, 'tcp', 'relay', 4001)?.host, 'a')
  })

  it('loopback targets are dialled directly unless a test turns that off', () => {
    const env = parseProxyEnvironment({ ALL_PROXY: 'socks5://a:3' })
    for (const host of ['127.0.0.1', '127.5.6.7', '::1', '[::1]', 'localhost', 'LOCALHOST.', 'relay.localhost']) {
      assert.equal(proxyFor(env, 'tcp', host, 4001), undefined, host)
      assert.ok(isLoopbackHost(host), host)
    }
    assert.equal(proxyFor({ ...env, directLoopback: false }, 'tcp', '127.0.0.1', 4001)?.host, 'a')
    assert.equal(isLoopbackHost('128.0.0.1'), false)
  })

  it('NO_PROXY applies to every kind of dial', () => {
    const env = parseProxyEnvironment({ HTTPS_PROXY: 'http://proxy:3128', ALL_PROXY: 'socks5://s:1080', NO_PROXY: '.corp.example,10.0.0.0/8' })
    assert.equal(proxyFor(env, 'wss', 'relay.corp.example', 443), undefined)
    assert.equal(proxyFor(env, 'tcp', '10.1.2.3', 4001), undefined)
    assert.equal(proxyFor(env, 'wss', 'relay.example', 443)?.host, 'proxy')
  })

  it('describes the configuration in one line without credentials', () => {
    const line = describeProxyEnvironment(parseProxyEnvironment({ HTTPS_PROXY: 'http://u:topsecret@proxy:3128', ALL_PROXY: 'socks5://u:alsosecret@s:1080', NO_PROXY: 'a,b' }))
    assert.match(line, /WebSocket dials via http:\/\/\*\*\*@proxy:3128 \(HTTPS_PROXY\)/)
    assert.match(line, /TCP dials .* via socks5:\/\/\*\*\*@s:1080 \(ALL_PROXY\)/)
    assert.match(line, /except 2 NO_PROXY rule/)
    assert.ok(!/secret/.test(line))
  })

  it('a bad variable stops parsing with an error naming it', () => {
    assert.throws(() => parseProxyEnvironment({ all_proxy: 'socks4://x:1' }), /^ProxyConfigError: all_proxy: unsupported/)
    assert.throws(() => parseProxyEnvironment({ NO_PROXY: '10.0.0.0/33' }), /NO_PROXY: "10.0.0.0\/33": prefix length must be 0-32/)
  })
})

describe('NO_PROXY rules', () => {
  it('"*" alone sends everything direct', () => {
    assert.deepEqual(parseNoProxy('*'), [{ type: 'all' }])
    assert.ok(direct('*', 'anything.example'))
    assert.ok(direct('*', '198.51.100.10'))
    assert.ok(direct('foo.example, *', '198.51.100.10'), '"*" among other entries')
  })

  it('a domain matches itself and its subdomains, with or without a leading dot or "*."', () => {
    for (const rule of ['example.com', '.example.com', '*.example.com', 'EXAMPLE.COM', 'example.com.']) {
      assert.ok(direct(rule, 'example.com'), `${rule} ↔ example.com`)
      assert.ok(direct(rule, 'relay.example.com'), `${rule} ↔ relay.example.com`)
      assert.ok(direct(rule, 'a.b.example.com'), `${rule} ↔ a.b.example.com`)
      assert.ok(direct(rule, 'Relay.Example.Com.'), `${rule} ↔ Relay.Example.Com.`)
      assert.ok(!direct(rule, 'notexample.com'), `${rule} must not match a look-alike`)
      assert.ok(!direct(rule, 'example.com.evil.net'), `${rule} must not match a longer name`)
      assert.ok(!direct(rule, 'example.org'), rule)
    }
  })

  it('an exact host matches only that name (and names under it)', () => {
    assert.ok(direct('relay1', 'relay1'))
    assert.ok(!direct('relay1', 'relay10'))
    assert.ok(!direct('relay1', 'relay'))
  })

  it('a domain rule never matches an IP address, and an IP rule never a name', () => {
    assert.ok(!direct('example.com', '93.184.216.34'))
    assert.ok(!direct('10.0.0.1', 'ten.example'))
    assert.ok(!direct('0.0.1', '10.0.0.1'), 'a partial IP is a name rule, not a suffix of the address')
  })

  it('an IPv4 address matches exactly', () => {
    assert.ok(direct('198.51.100.10', '198.51.100.10'))
    assert.ok(!direct('198.51.100.10', '198.51.100.100'))
    assert.ok(!direct('198.51.100.10', '198.51.100.1'))
  })

  it('an IPv6 address matches however it is written, bracketed or not', () => {
    assert.ok(direct('::1', '::1'))
    assert.ok(direct('[::1]', '0:0:0:0:0:0:0:1'))
    assert.ok(direct('2001:db8::1', '[2001:DB8:0::1]'))
    assert.ok(!direct('2001:db8::1', '2001:db8::2'))
  })

  it('CIDR ranges match IP literals inside them, v4 and v6', () => {
    const rules = '10.0.0.0/8, 192.168.1.0/24, 198.51.100.128/25, fd00::/8, 203.0.113.7/32'
    assert.ok(direct(rules, '10.255.3.4'))
    assert.ok(direct(rules, '192.168.1.200'))
    assert.ok(!direct(rules, '192.168.2.1'))
    assert.ok(direct(rules, '198.51.100.200'))
    assert.ok(!direct(rules, '198.51.100.10'), 'below the /25')
    assert.ok(direct(rules, 'fd12:3456::1'))
    assert.ok(!direct(rules, 'fe80::1'))
    assert.ok(direct(rules, '203.0.113.7'))
    assert.ok(!direct(rules, '203.0.113.8'))
    assert.ok(!direct(rules, 'ten.example'), 'names are not resolved to check ranges')
    assert.ok(direct('0.0.0.0/0', '8.8.8.8'))
    assert.ok(!direct('0.0.0.0/0', '::1'), 'a v4 range never matches a v6 address')
  })

  it('host:port and [v6]:port rules match only that port', () => {
    assert.ok(direct('relay.example:443', 'relay.example', 443))
    assert.ok(!direct('relay.example:443', 'relay.example', 4001))
    assert.ok(direct('198.51.100.10:4001', '198.51.100.10', 4001))
    assert.ok(!direct('198.51.100.10:4001', '198.51.100.10', 443))
    assert.ok(direct('[2001:db8::1]:443', '2001:db8::1', 443))
    assert.ok(!direct('[2001:db8::1]:443', '2001:db8::1', 80))
    assert.ok(direct('.corp.example:8443', 'a.corp.example', 8443))
    assert.ok(!direct('.corp.example:8443', 'a.corp.example', 443))
  })

  it('separators: commas, spaces and empty entries', () => {
    assert.deepEqual(parseNoProxy(' a.example ,, b.example  c.example,'), [
      { type: 'domain', domain: 'a.example' },
      { type: 'domain', domain: 'b.example' },
      { type: 'domain', domain: 'c.example' }
    ])
    assert.deepEqual(parseNoProxy(''), [])
    assert.deepEqual(parseNoProxy(' , '), [])
  })

  it('parses each rule into its kind', () => {
    assert.deepEqual(parseNoProxy('10.0.0.0/8,fd00::/8,1.2.3.4,::1,host:80,[::1]:81'), [
      { type: 'cidr', network: '10.0.0.0', prefix: 8, family: 4 },
      { type: 'cidr', network: 'fd00::', prefix: 8, family: 6 },
      { type: 'ip', ip: '1.2.3.4' },
      { type: 'ip', ip: '::1' },
      { type: 'domain', domain: 'host', port: 80 },
      { type: 'ip', ip: '::1', port: 81 }
    ])
  })

  it('refuses entries that are none of these, naming the variable', () => {
    for (const bad of ['exa mple/8', 'host:http', 'host:0', 'host:70000', 'bad_/', 'a..b', '10.0.0.0/-1', 'name/8', 'fd00::/129']) {
      assert.throws(() => parseNoProxy(bad, 'no_proxy'), (err: Error) => err instanceof ProxyConfigError && /^no_proxy: /.test(err.message), bad)
    }
  })
})
