import { after, before } from 'node:test'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'

/**
 * Captures every log line of the test file as JSON (INFO and up), from its
 * first test to its last: assertions look at level, component and fields,
 * not at wording.
 */
export function captureJsonLogs (): { lines: string[], records: () => Array<Record<string, unknown>> } {
  const lines: string[] = []
  before(() => {
    configureLogging({ spec: 'info', format: 'json', sink: (line) => { lines.push(line) } })
  })
  after(() => { resetLogging() })
  return { lines, records: () => lines.map(l => JSON.parse(l) as Record<string, unknown>) }
}
