/**
 * WPAD discovery (src/net/proxy-discovery.ts) with fakes for every read:
 * resolv.conf search domains and their parents, DHCP option 252 in the lease
 * formats of dhclient, systemd-networkd and NetworkManager, the order
 * (operator's PAC, then DHCP, then DNS), what `status` says it looked at, and
 * a PAC that does not compile ending as `failed`, not `not-found`.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { pacRouteUrl, ProxyDiscovery, searchDomains, wpadDnsUrls, wpadFromLease, type ProxyDiscoveryComponents } from '../../src/net/proxy-discovery.ts'
import { recordingLogger } from '../helpers/recording-logger.ts'

describe('searchDomains', () => {
  it('reads search and domain lines in order, without duplicates, comments or trailing dots', () => {
    const conf = '# comment\nnameserver 10.0.0.53\ndomain corp.example.\nsearch corp.example lab.corp.example ; trailing\noptions ndots:1\n'
    assert.deepEqual(searchDomains(conf), ['corp.example', 'lab.corp.example'])
  })

  it('finds none in a resolv.conf without search or domain', () => {
    assert.deepEqual(searchDomains('nameserver 10.255.255.53\n'), [])
  })
})

describe('wpadDnsUrls', () => {
  it('asks wpad.<domain> for each domain and its parents down to two labels, never a top-level domain', () => {
    assert.deepEqual(wpadDnsUrls(['a.corp.lab.example', 'lab.example', 'example']), [
      'http://wpad.a.corp.lab.example/wpad.dat',
      'http://wpad.corp.lab.example/wpad.dat',
      'http://wpad.lab.example/wpad.dat'
    ])
  })
})

describe('wpadFromLease', () => {
  it('reads dhclient\'s option wpad, the newest lease winning', () => {
    const text = 'lease {\n  option wpad "http://old.example/wpad.dat";\n}\nlease {\n  option wpad "http://new.example/wpad.dat";\n}\n'
    assert.equal(wpadFromLease(text), 'http://new.example/wpad.dat')
  })

  it('reads option unknown-252 as a quoted string with a NUL terminator or as hex bytes', () => {
    assert.equal(wpadFromLease('lease {\n  option unknown-252 "http://w.example/p.pac\\000";\n}'), 'http://w.example/p.pac')
    const hex = [...Buffer.from('http://h.example/wpad.dat\0')].map(b => b.toString(16).padStart(2, '0')).join(':')
    assert.equal(wpadFromLease(`lease {\n  option unknown-252 ${hex};\n}`), 'http://h.example/wpad.dat')
  })

  it('reads WPAD= lines of key=value leases', () => {
    assert.equal(wpadFromLease('ADDRESS=10.0.0.5\nWPAD=http://kv.example/wpad.dat\n'), 'http://kv.example/wpad.dat')
  })

  it('finds nothing in a lease without option 252, or with a value that is not a URL', () => {
    assert.equal(wpadFromLease('lease {\n  option routers 10.0.0.1;\n}'), undefined)
    assert.equal(wpadFromLease('lease {\n  option wpad "not a url";\n}'), undefined)
  })
})

describe('pacRouteUrl', () => {
  it('asks about wss and tcp as https and ws as http, with the port and IPv6 brackets', () => {
    assert.equal(pacRouteUrl('wss', 'relay.example', 443), 'https://relay.example:443/')
    assert.equal(pacRouteUrl('tcp', '10.0.0.9', 4001), 'https://10.0.0.9:4001/')
    assert.equal(pacRouteUrl('ws', '2001:db8::1', 4002), 'http://[2001:db8::1]:4002/')
  })
})

const PAC = 'function FindProxyForURL(url, host) { return "PROXY 10.0.0.1:3128; DIRECT" }'

/** A file system and web made of maps; every read is recorded. */
function fakeIo (files: Record<string, string>, web: Record<string, string>): ProxyDiscoveryComponents & { fetched: string[] } {
  const fetched: string[] = []
  const enoent = (what: string): Error => Object.assign(new Error(`ENOENT: ${what}`), { code: 'ENOENT' })
  return {
    fetched,
    readFile: async (path) => {
      if (files[path] == null) throw enoent(path)
      return files[path]
    },
    readdir: async (dir) => {
      const names = Object.keys(files).filter(p => p.startsWith(`${dir}/`)).map(p => p.slice(dir.length + 1))
      if (names.length === 0) throw enoent(dir)
      return names
    },
    fetchText: async (url) => {
      fetched.push(url)
      if (web[url] == null) throw Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error(`getaddrinfo ENOTFOUND ${new URL(url).hostname}`), { code: 'ENOTFOUND' }) })
      return web[url]
    }
  }
}

const LEASES = [{ dir: '/leases/dhcp', match: /\.leases$/ }, { dir: '/leases/nm', match: /\.lease$/ }]

describe('ProxyDiscovery', () => {
  it('finds the PAC by DNS at the first wpad.<domain> that serves one, after DHCP found none, and logs it once at INFO', async () => {
    const io = fakeIo({
      '/etc/resolv.conf': 'search a.corp.example\n',
      '/leases/dhcp/dhclient.eth0.leases': 'lease {\n  option routers 10.0.0.1;\n}\n'
    }, { 'http://wpad.corp.example/wpad.dat': PAC })
    const logger = recordingLogger()
    const lines = logger.lines
    const discovery = new ProxyDiscovery({ resolvConfPath: '/etc/resolv.conf', leaseDirs: LEASES, logger }, io)
    assert.equal(discovery.status().state, 'not-needed')
    const pac = await discovery.start()
    try {
      assert.ok(pac != null)
      assert.deepEqual(io.fetched, ['http://wpad.a.corp.example/wpad.dat', 'http://wpad.corp.example/wpad.dat'])
      const s = discovery.status()
      assert.equal(s.state, 'found')
      assert.equal(s.source, 'wpad-dns')
      assert.equal(s.url, 'http://wpad.corp.example/wpad.dat')
      assert.deepEqual(s.looked, [
        '/leases/dhcp/dhclient.eth0.leases: no option 252',
        '/leases/nm: ENOENT',
        '/etc/resolv.conf: search a.corp.example',
        'http://wpad.a.corp.example/wpad.dat: fetch failed (ENOTFOUND)',
        'http://wpad.corp.example/wpad.dat: a PAC'
      ])
      assert.deepEqual(lines.filter(l => l.fields?.code === 'PROXY_PAC_FOUND').map(l => l.level), ['info'])
      // once: a second start reuses the outcome
      assert.equal(await discovery.start(), pac)
      assert.equal(io.fetched.length, 2)
    } finally {
      discovery.close()
    }
  })

  it('prefers DHCP option 252 over DNS', async () => {
    const io = fakeIo({
      '/etc/resolv.conf': 'search corp.example\n',
      '/leases/nm/internal-eth0.lease': 'WPAD=http://dhcp.corp.example/proxy.pac\n'
    }, { 'http://dhcp.corp.example/proxy.pac': PAC, 'http://wpad.corp.example/wpad.dat': PAC })
    const discovery = new ProxyDiscovery({ leaseDirs: LEASES, resolvConfPath: '/etc/resolv.conf', logger: recordingLogger() }, io)
    try {
      await discovery.start()
      assert.equal(discovery.status().source, 'wpad-dhcp')
      assert.deepEqual(io.fetched, ['http://dhcp.corp.example/proxy.pac'])
    } finally {
      discovery.close()
    }
  })

  it('uses the operator\'s PAC alone, looking at no lease and no DNS name', async () => {
    const io = fakeIo({ '/etc/resolv.conf': 'search corp.example\n' }, { 'http://pac.example/p.pac': PAC })
    const discovery = new ProxyDiscovery({ explicit: { url: 'http://pac.example/p.pac', source: 'flag' }, leaseDirs: LEASES, resolvConfPath: '/etc/resolv.conf', logger: recordingLogger() }, io)
    try {
      assert.ok(await discovery.ready() != null)
      assert.deepEqual(io.fetched, ['http://pac.example/p.pac'])
      assert.equal(discovery.status().source, 'flag')
    } finally {
      discovery.close()
    }
  })

  it('says not-found, with every place it looked, at WARN when the network names no proxy', async () => {
    const io = fakeIo({ '/etc/resolv.conf': 'search corp.example\n' }, {})
    const logger = recordingLogger()
    const lines = logger.lines
    const discovery = new ProxyDiscovery({ leaseDirs: LEASES, resolvConfPath: '/etc/resolv.conf', logger }, io)
    assert.equal(await discovery.start(), undefined)
    const s = discovery.status()
    assert.equal(s.state, 'not-found')
    assert.deepEqual(s.looked, ['/leases/dhcp: ENOENT', '/leases/nm: ENOENT', '/etc/resolv.conf: search corp.example', 'http://wpad.corp.example/wpad.dat: fetch failed (ENOTFOUND)'])
    const warn = lines.find(l => l.fields?.code === 'PROXY_PAC_NOT_FOUND')
    assert.equal(warn?.level, 'warn')
    assert.deepEqual(warn?.fields?.looked, s.looked)
  })

  it('says failed, naming the code, when the PAC found does not compile', async () => {
    const io = fakeIo({ '/etc/resolv.conf': 'search corp.example\n' }, { 'http://wpad.corp.example/wpad.dat': '<html>sign in</html>' })
    const discovery = new ProxyDiscovery({ leaseDirs: LEASES, resolvConfPath: '/etc/resolv.conf', logger: recordingLogger() }, io)
    assert.equal(await discovery.start(), undefined)
    const s = discovery.status()
    assert.equal(s.state, 'failed')
    assert.match(s.detail ?? '', /PAC_SCRIPT_INVALID/)
  })

  it('says failed when the operator\'s PAC cannot be fetched, and keeps credentials out of status', async () => {
    const io = fakeIo({}, {})
    const discovery = new ProxyDiscovery({ explicit: { url: 'http://user:secret@pac.example/p.pac', source: 'config' }, logger: recordingLogger() }, io)
    assert.equal(await discovery.ready(), undefined)
    const s = discovery.status()
    assert.equal(s.state, 'failed')
    assert.equal(s.source, 'config')
    assert.doesNotMatch(JSON.stringify(s), /secret/)
  })

  it('looks again after a move to another network, and keeps an operator\'s PAC whatever the network', async () => {
    let network = 'office'
    const io = fakeIo({ '/etc/resolv.conf': 'search corp.example\n' }, {})
    const discovery = new ProxyDiscovery({ leaseDirs: [], resolvConfPath: '/etc/resolv.conf', network: () => network, logger: recordingLogger() }, io)
    await discovery.start()
    assert.equal(discovery.status().state, 'not-found')
    assert.equal(discovery.checkNetwork(), false, 'same network: the outcome stands')
    network = 'home'
    assert.equal(discovery.checkNetwork(), true)
    assert.equal(discovery.status().state, 'not-needed')
    await discovery.start()
    assert.equal(io.fetched.length, 2, 'wpad.corp.example was asked again on the new network')
    const explicit = new ProxyDiscovery({ explicit: { url: 'http://pac.example/p.pac', source: 'flag' }, network: () => network, logger: recordingLogger() }, fakeIo({}, { 'http://pac.example/p.pac': PAC }))
    await explicit.ready()
    network = 'hotel'
    assert.equal(explicit.checkNetwork(), false)
    assert.equal(explicit.status().state, 'found')
    explicit.close()
  })

  it('keeps the latest answers per URL, redacted', () => {
    const discovery = new ProxyDiscovery({ logger: recordingLogger() }, fakeIo({}, {}))
    discovery.recordAnswer('https://r:443/', 'PROXY a:1')
    discovery.recordAnswer('https://r:443/', 'PROXY b:2; DIRECT')
    assert.deepEqual(discovery.status().answers, [{ url: 'https://r:443/', answer: 'PROXY b:2; DIRECT' }])
  })
})
