import type { Fields, Level, Logger } from '../../src/log/logger.ts'

export interface LogLine { level: Level, msg: string, fields?: Fields }

/** A logger that keeps its lines (children's too) in `lines`, for assertions on levels, codes and fields. */
export function recordingLogger (lines: LogLine[] = [], component = 'test'): Logger & { lines: LogLine[] } {
  const at = (level: Level) => (msg: string, fields?: Fields): void => { lines.push({ level, msg, fields }) }
  return {
    component,
    lines,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    trace: at('trace'),
    enabled: () => true,
    child: (name) => recordingLogger(lines, `${component}.${name}`)
  }
}
