import { ConfigError } from '../core/errors.ts'

/**
 * `--run-hours START-END`: the local-time window in which a donor runs jobs,
 * in whole hours or HH:MM. A window whose end is before its start wraps past
 * midnight (`18-08`: evenings and nights); `0-24` is always.
 */
export interface RunHours {
  /** as given, for status and `worldcompute config` */
  readonly text: string
  /** minutes after local midnight the window opens, 0–1439 */
  readonly startMinute: number
  /** minutes after local midnight the window closes, 1–1440 (1440: midnight at the end of the day) */
  readonly endMinute: number
}

const MINUTES_PER_DAY = 24 * 60
const TIME = /^(\d{1,2})(?::(\d{2}))?$/

function minuteOf (part: string, source: string, whole: string): number {
  const m = TIME.exec(part.trim())
  const hours = m != null ? Number(m[1]) : Number.NaN
  const minutes = m?.[2] != null ? Number(m[2]) : 0
  const total = hours * 60 + minutes
  if (m == null || hours > 24 || minutes > 59 || total > MINUTES_PER_DAY) {
    throw new ConfigError(`${source}: "${whole}" is not a window of local hours: give START-END in hours 0–24 or HH:MM, e.g. 18-08 (evenings and nights) or 0-24 (always)`)
  }
  return total
}

/** Parses `START-END`; throws a ConfigError naming `source` for anything else, or an empty window. */
export function parseRunHours (value: string, source: string): RunHours {
  const parts = value.split('-')
  if (parts.length !== 2) minuteOf('', source, value)
  const startMinute = minuteOf(parts[0], source, value) % MINUTES_PER_DAY
  const endMinute = minuteOf(parts[1], source, value)
  if (startMinute === endMinute % MINUTES_PER_DAY && !(startMinute === 0 && endMinute === MINUTES_PER_DAY)) {
    throw new ConfigError(`${source}: "${value}" opens and closes at the same time; give a window such as 18-08, or 0-24 for always`)
  }
  return Object.freeze({ text: value.trim(), startMinute, endMinute })
}

/** Minutes after local midnight of `at`. */
export function localMinuteOfDay (at: Date): number {
  return at.getHours() * 60 + at.getMinutes()
}

/** Whether a local minute of the day lies inside the window (its start included, its end not). */
export function withinRunHours (hours: RunHours, minute: number): boolean {
  const { startMinute: start, endMinute: end } = hours
  if (start < end) return minute >= start && minute < end
  return minute >= start || minute < end
}

/** Milliseconds from `at` to the next opening or closing of the window (at least one second, so a timer never spins). */
export function msToNextRunHoursEdge (hours: RunHours, at: Date): number {
  const minute = localMinuteOfDay(at)
  const edges = [hours.startMinute, hours.endMinute % MINUTES_PER_DAY]
  const ahead = Math.min(...edges.map(e => ((e - minute + MINUTES_PER_DAY - 1) % MINUTES_PER_DAY) + 1))
  const intoMinute = at.getSeconds() * 1000 + at.getMilliseconds()
  return Math.max(1000, ahead * 60_000 - intoMinute)
}
