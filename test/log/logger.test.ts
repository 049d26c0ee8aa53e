import { describe, it, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { configureLogging, createLogger, levelFor, parseLogFilter, resetLogging } from '../../src/log/logger.ts'
import { shortPeerId } from '../../src/core/format.ts'

/** Captures every line the logger emits until resetLogging(). */
function capture (opts: { spec?: string, format?: 'text' | 'json' } = {}): string[] {
  const lines: string[] = []
  configureLogging({ ...opts, sink: line => { lines.push(line) } })
  return lines
}

describe('parseLogFilter', () => {
  it('reads a default level and per-component rules', () => {
    const filter = parseLogFilter('warn,net=debug,net.dial=trace')
    assert.equal(filter.defaultLevel, 'warn')
    assert.deepEqual(
      [...filter.rules].sort((a, b) => a.prefix.localeCompare(b.prefix)),
      [{ prefix: 'net', level: 'debug' }, { prefix: 'net.dial', level: 'trace' }]
    )
  })

  it('gives each component the level of its rule, others the default', () => {
    const filter = parseLogFilter('info,net=debug,net.dial=trace')
    assert.equal(levelFor(filter, 'net'), 'debug')
    assert.equal(levelFor(filter, 'net.dial'), 'trace')
    assert.equal(levelFor(filter, 'donor'), 'info')
  })

  it('lets the longest matching prefix win whatever the order of the rules', () => {
    const filter = parseLogFilter('net.dial=trace,net=error')
    assert.equal(levelFor(filter, 'net.dial'), 'trace')
    assert.equal(levelFor(filter, 'net.listen'), 'error')
  })

  it('lets a child component inherit its parent rule', () => {
    const filter = parseLogFilter('info,net=debug,net.dial=trace')
    assert.equal(levelFor(filter, 'net.dial.x'), 'trace')
    assert.equal(levelFor(filter, 'net.other'), 'debug')
  })

  it('matches whole component names, not string prefixes', () => {
    const filter = parseLogFilter('info,net=debug,net.dial=trace')
    assert.equal(levelFor(filter, 'network'), 'info')
    assert.equal(levelFor(filter, 'net.dialer'), 'debug')
  })

  it('defaults to info for an empty or missing spec', () => {
    assert.deepEqual(parseLogFilter(undefined), { defaultLevel: 'info', rules: [] })
    assert.deepEqual(parseLogFilter('  '), { defaultLevel: 'info', rules: [] })
  })

  it('accepts levels in any case and ignores empty parts and spaces', () => {
    const filter = parseLogFilter(' DEBUG , , api = Trace ')
    assert.equal(filter.defaultLevel, 'debug')
    assert.deepEqual(filter.rules, [{ prefix: 'api', level: 'trace' }])
  })

  it('throws on an unknown default level with a message starting with WORLDCOMPUTE_LOG:', () => {
    assert.throws(() => parseLogFilter('verbose'), (err: unknown) =>
      err instanceof Error && err.message.startsWith('WORLDCOMPUTE_LOG:') && err.message.includes('verbose'))
  })

  it('throws on an unknown component level with a message starting with WORLDCOMPUTE_LOG:', () => {
    assert.throws(() => parseLogFilter('info,net=loud'), (err: unknown) =>
      err instanceof Error && err.message.startsWith('WORLDCOMPUTE_LOG:') && err.message.includes('net=loud'))
  })

  it('throws on a rule without a component', () => {
    assert.throws(() => parseLogFilter('=debug'), /^Error: WORLDCOMPUTE_LOG:/)
  })
})

describe('createLogger', () => {
  afterEach(() => { resetLogging() })

  it('suppresses debug at the default level but emits info, warn and error', () => {
    const lines = capture()
    const log = createLogger('net')
    log.debug('hidden debug')
    log.trace('hidden trace')
    log.info('shown info')
    log.warn('shown warn')
    log.error('shown error')
    assert.equal(lines.length, 3)
    assert.ok(!lines.some(l => l.includes('hidden')))
    assert.equal(log.enabled('debug'), false)
    assert.equal(log.enabled('info'), true)
  })

  it('emits debug for a component whose rule allows it', () => {
    const lines = capture({ spec: 'info,net=debug' })
    createLogger('net.dial').debug('dial debug')
    createLogger('api').debug('api debug')
    assert.equal(lines.length, 1)
    assert.ok(lines[0].includes('dial debug'))
  })

  it('writes text lines holding the level, the component, the message and the fields', () => {
    const lines = capture({ format: 'text' })
    createLogger('net.dial').warn('dial failed', { peer: 'abc', duration_ms: 12, note: 'two words' })
    assert.equal(lines.length, 1)
    const line = lines[0]
    assert.ok(!line.includes('\n'))
    assert.match(line, /\bWARN\b/)
    assert.ok(line.includes('net.dial: dial failed'), line)
    assert.ok(line.includes('peer=abc'), line)
    assert.ok(line.includes('duration_ms=12'), line)
    assert.ok(line.includes('note="two words"'), line)
  })

  it('shortens PeerIds in text fields, whole or inside an address, and keeps them whole in the message and in JSON', () => {
    const id = '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'
    const text = capture({ format: 'text' })
    createLogger('net').warn(`lost relay ${id}`, { peer: id, addr: `/ip4/127.0.0.1/tcp/4001/p2p/${id}` })
    assert.ok(text[0].includes(`lost relay ${id}`), text[0])
    assert.ok(text[0].includes(`peer=${shortPeerId(id)}`), text[0])
    assert.ok(text[0].includes(`addr=/ip4/127.0.0.1/tcp/4001/p2p/${shortPeerId(id)}`), text[0])
    const json = capture({ format: 'json' })
    createLogger('net').warn('lost relay', { peer: id })
    assert.equal(JSON.parse(json[0]).peer, id)
  })

  it('writes one parseable JSON object per line with ts, level, component, msg and the fields', () => {
    const lines = capture({ format: 'json' })
    const log = createLogger('api')
    log.info('first', { port: 7767, err: new TypeError('boom'), skipped: undefined })
    log.error('second')
    assert.equal(lines.length, 2)
    for (const line of lines) assert.ok(!line.includes('\n'))
    const first = JSON.parse(lines[0]) as Record<string, unknown>
    assert.equal(typeof first.ts, 'string')
    assert.ok(!Number.isNaN(Date.parse(first.ts as string)))
    assert.equal(first.level, 'info')
    assert.equal(first.component, 'api')
    assert.equal(first.msg, 'first')
    assert.equal(first.port, 7767)
    assert.deepEqual(first.err, { name: 'TypeError', message: 'boom' })
    assert.ok(!('skipped' in first))
    const second = JSON.parse(lines[1]) as Record<string, unknown>
    assert.equal(second.level, 'error')
    assert.equal(second.msg, 'second')
  })

  it('does not let a field overwrite the fixed JSON keys', () => {
    const lines = capture({ format: 'json' })
    createLogger('api').info('real message', { msg: 'impostor', level: 'trace' })
    const obj = JSON.parse(lines[0]) as Record<string, unknown>
    assert.equal(obj.msg, 'real message')
    assert.equal(obj.level, 'info')
  })

  it('names a child logger parent.child', () => {
    const lines = capture({ format: 'json' })
    const child = createLogger('net').child('dial')
    assert.equal(child.component, 'net.dial')
    child.warn('x')
    assert.equal((JSON.parse(lines[0]) as { component: string }).component, 'net.dial')
  })

  it('applies a filter configured after the logger was created', () => {
    const log = createLogger('donor')
    const lines = capture({ spec: 'error' })
    log.warn('suppressed')
    log.error('kept')
    assert.deepEqual(lines.map(l => l.includes('kept')), [true])
  })
})
