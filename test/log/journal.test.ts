/**
 * The logger under systemd (priority prefixes when stderr is the journal)
 * and operator lines (plain in text, JSON records with --log-format json).
 */
import { afterEach, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, fstatSync, openSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { configureLogging, createLogger, operatorLine, resetLogging, stderrIsJournal } from '../../src/log/logger.ts'

function capture (opts: { spec?: string, format?: 'text' | 'json', journal?: boolean } = {}): string[] {
  const lines: string[] = []
  configureLogging({ ...opts, sink: line => { lines.push(line) } })
  return lines
}

afterEach(() => { resetLogging() })

describe('stderrIsJournal', () => {
  it('is true only when JOURNAL_STREAM names the device and inode of the descriptor itself', () => {
    const fd = openSync(tmpdir(), 'r')
    try {
      const st = fstatSync(fd)
      assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }, fd), true)
      assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1}` }, fd), false)
      assert.equal(stderrIsJournal({ JOURNAL_STREAM: 'garbage' }, fd), false)
      assert.equal(stderrIsJournal({}, fd), false)
    } finally {
      closeSync(fd)
    }
  })
})

describe('logging to the journal', () => {
  it('starts each text line with its syslog priority, leaves out the timestamp and keeps a multi-line message on one line', () => {
    const lines = capture({ spec: 'debug', journal: true })
    const log = createLogger('net')
    log.error('boom\n    at somewhere')
    log.warn('careful')
    log.info('hello', { peer: 'abc' })
    log.debug('detail')
    assert.deepEqual(lines, [
      '<3>ERROR net: boom\\n    at somewhere',
      '<4>WARN  net: careful',
      '<6>INFO  net: hello  peer=abc',
      '<7>DEBUG net: detail'
    ])
  })

  it('prefixes JSON lines too, the rest of each line being the JSON record journald stores', () => {
    const lines = capture({ format: 'json', journal: true })
    createLogger('api').warn('taken', { code: 'X' })
    assert.equal(lines.length, 1)
    assert.ok(lines[0].startsWith('<4>{'), lines[0])
    const record = JSON.parse(lines[0].slice(3)) as Record<string, unknown>
    assert.equal(record.level, 'warn')
    assert.equal(record.code, 'X')
  })

  it('writes no prefix and keeps the timestamp when stderr is not the journal', () => {
    const lines = capture({ journal: false })
    createLogger('net').info('hello')
    assert.match(lines[0], /^\d\d:\d\d:\d\d\.\d{3} INFO  net: hello$/)
  })
})

describe('operatorLine', () => {
  it('in the text format hands the message as it is to the plain writer and logs nothing', () => {
    const lines = capture({ journal: false })
    const plain: string[] = []
    operatorLine(l => { plain.push(l) }, 'lifecycle', 'info', 'received SIGINT, stopping', { signal: 'SIGINT' })
    assert.deepEqual(plain, ['received SIGINT, stopping'])
    assert.deepEqual(lines, [])
  })

  it('in the JSON format writes a record with its level, component and fields, whatever the filter', () => {
    const lines = capture({ format: 'json', spec: 'error', journal: false })
    const plain: string[] = []
    operatorLine(l => { plain.push(l) }, 'lifecycle', 'info', 'received SIGINT, stopping', { signal: 'SIGINT' })
    assert.deepEqual(plain, [])
    assert.equal(lines.length, 1)
    const record = JSON.parse(lines[0]) as Record<string, unknown>
    assert.deepEqual({ level: record.level, component: record.component, msg: record.msg, signal: record.signal },
      { level: 'info', component: 'lifecycle', msg: 'received SIGINT, stopping', signal: 'SIGINT' })
  })
})
