/**
 * Preloaded into every test file's process by scripts/run-tests.ts. A test
 * file whose tests have all finished but whose process stays open (a timer
 * or socket left behind, by our code or a library's) would otherwise hold
 * the whole run until CI's own limit and say nothing about why. After
 * WC_TEST_FILE_LIMIT_S seconds this names what is still holding the process
 * open and ends it with a failure. The timer is unref'd: it never keeps a
 * finished file alive by itself.
 */
const limitS = Number(process.env.WC_TEST_FILE_LIMIT_S ?? '0')
if (Number.isFinite(limitS) && limitS > 0) {
  const started = Date.now()
  setTimeout(() => {
    const file = process.argv[1] ?? '(unknown file)'
    const held = process.getActiveResourcesInfo().filter(r => r !== 'TTYWrap')
    process.stderr.write(`test file watchdog: ${file} still running after ${Math.round((Date.now() - started) / 1000)} s ` +
      `(limit ${limitS} s, WC_TEST_FILE_LIMIT_S); still open: ${held.join(', ') || 'nothing reported'}\n`)
    process.exit(124)
  }, limitS * 1000).unref()
}
