/**
 * A second test reporter beside `spec`: it writes one JSON line per failed
 * test to the file scripts/run-tests.ts names, so that the run can list every
 * failure again at its very end. Without it a fast-test failure scrolls away
 * behind twenty minutes of lab output, and a CI log that keeps only its tail
 * says "exit 1" and nothing else.
 */
interface TestEvent {
  type: string
  data: {
    name?: string
    file?: string
    nesting?: number
    details?: { error?: { message?: string, cause?: unknown } }
  }
}

/** The first line of a failure's cause: the assertion or error, not the runner's wrapper text. */
function reason (details: TestEvent['data']['details']): string {
  const err = details?.error
  const cause = err?.cause
  const text = cause instanceof Error ? cause.message : typeof cause === 'string' ? cause : err?.message
  return String(text ?? 'no error message').split('\n').slice(0, 3).join(' ').slice(0, 400)
}

export default async function * failureRecap (source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  for await (const event of source) {
    if (event.type !== 'test:fail') continue
    const { name, file, nesting } = event.data
    yield JSON.stringify({ name, file, nesting, reason: reason(event.data.details) }) + '\n'
  }
}
