/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core
 * (the system browser, no download) against an in-process relay and donor on
 * 127.0.0.1, logged in with the link `worldcompute dashboard` prints.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { chromium, type Browser, type Page } from 'playwright-core'
import { routes } from '../../src/api/routes.ts'
import { runDashboard } from '../../src/cli/commands/dashboard.ts'
import { dataDirPaths } from '../../src/config/data-dir.ts'
import { reservedStatus, startTestDonor, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { DaemonHandle, RelayHandle } from '../../src/daemon/daemon.ts'
import type { ApiClient } from '../../src/api/client.ts'

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOT = '/tmp/wc-dashboard.png'

interface RawResponse { status: number, headers: Record<string, string | string[] | undefined>, text: string }

/** A request with full control of the headers (fetch forbids setting Host), to 127.0.0.1 only. */
async function raw (port: number, path: string, opts: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path, headers: opts.headers ?? {}, agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => { chunks.push(c) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (opts.body != null) req.write(opts.body)
    req.end()
  })
}

function errorCode (res: RawResponse): string | undefined {
  return (JSON.parse(res.text) as { error?: { code?: string } }).error?.code
}

/** The login link, through the CLI command and the API client, as a person gets it. */
async function loginUrl (dataDir: string): Promise<string> {
  const out: string[] = []
  const code = await runDashboard(['--data-dir', dataDir], { out: l => { out.push(l) }, err: () => {} })
  assert.equal(code, 0)
  assert.equal(out.length, 1, out.join('\n'))
  return out[0]
}

/** Logs in with a fresh link over plain HTTP; the session cookie's `name=value`. */
async function sessionCookie (port: number, dataDir: string): Promise<string> {
  const url = new URL(await loginUrl(dataDir))
  const res = await raw(port, url.pathname + url.search)
  assert.equal(res.status, 302)
  const cookie = String(res.headers['set-cookie'])
  return cookie.split(';')[0]
}

describe('the dashboard in a real browser', () => {
  const dir = tempDir('wc-dashboard-')
  let relay: RelayHandle
  let donor: DaemonHandle & { client: ApiClient }
  let donorDir: string
  let browser: Browser
  const consoleErrors: string[] = []

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: this test drives Debian's chromium (apt-get install chromium; .ci/run installs it)`)
    }
    relay = await startTestRelay(join(dir.path, 'relay'))
    donorDir = join(dir.path, 'donor')
    donor = await startTestDonor(donorDir, relay.info.announceAddrs.filter(a => a.includes('/tcp/')), ['/p2p-circuit'], { noDirect: true })
    await waitFor('the donor\'s reservation', async () => await reservedStatus(donor.client, relay.info.peerId), 20_000)
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync']
    })
  })

  after(async () => {
    await browser?.close()
    await donor?.stop()
    await relay?.stop()
    dir.cleanup()
  })

  async function openPage (): Promise<Page> {
    // a fresh context: its own cookie jar and profile, nothing shared with another test
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 } })
    const page = await context.newPage()
    page.on('console', m => { if (m.type() === 'error') consoleErrors.push(`${m.text()} (${m.location().url})`) })
    page.on('pageerror', e => { consoleErrors.push(`page error: ${e.message}`) })
    return page
  }

  it('logs in with the one-time link and shows the PeerId, the relay reservation and its transport, live', async () => {
    const page = await openPage()
    const url = await loginUrl(donorDir)
    assert.match(url, new RegExp(`^http://127\\.0\\.0\\.1:${donor.apiPort}/dashboard/login\\?token=[\\w-]{43}$`))
    const res = await page.goto(url)
    assert.equal(res?.status(), 200)
    assert.equal(new URL(page.url()).pathname, '/dashboard/', 'the login redirects to the page, dropping the token from the address bar')
    assert.match(res?.headers()['content-security-policy'] ?? '', /default-src 'self'/)
    await page.locator('#peer-id', { hasText: donor.peerId }).waitFor({ timeout: 10_000 })
    const relayRow = page.locator('#relays tr', { hasText: relay.info.peerId })
    await relayRow.waitFor({ timeout: 10_000 })
    assert.match(await relayRow.innerText(), /\btcp\b/)
    assert.match(await page.locator('#verdict').innerText(), /Donating through 1 relay reservation/)
    await page.locator('#dial-chart canvas').waitFor({ timeout: 10_000 })
    assert.match(await page.locator('#live').innerText(), /^live/)
    assert.ok((await page.locator('#allowlist li').allInnerTexts()).some(l => /outbound TCP .* to 127\.0\.0\.1:\d+/.test(l)))
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    await page.context().close()
  })

  it('pauses and resumes from the button, or says plainly that this daemon cannot', async () => {
    const page = await openPage()
    await page.goto(await loginUrl(donorDir))
    await page.locator('#peer-id', { hasText: donor.peerId }).waitFor({ timeout: 10_000 })
    const button = page.locator('#pause-button')
    // MERGE: the pause/resume routes come from another branch; with them in src/api/routes.ts this
    // takes the first path (click Pause, see `paused` in status, click Resume), without them the second
    if ('pause' in routes && 'resume' in routes) {
      await button.filter({ hasText: 'Pause' }).waitFor({ timeout: 10_000 })
      await button.click()
      await button.filter({ hasText: 'Resume' }).waitFor({ timeout: 10_000 })
      const status = await donor.client.call('status', {}) as unknown as Record<string, unknown>
      assert.equal(status.paused, true)
      await button.click()
      await button.filter({ hasText: 'Pause' }).waitFor({ timeout: 10_000 })
      assert.equal((await donor.client.call('status', {}) as unknown as Record<string, unknown>).paused, false)
    } else {
      await page.locator('#pause-message', { hasText: 'Pause unavailable' }).waitFor({ timeout: 10_000 })
      assert.equal(await button.isDisabled(), true)
    }
    await page.context().close()
  })

  it('shows an empty history of jobs run for others when the daemon has none to show', async () => {
    const page = await openPage()
    await page.goto(await loginUrl(donorDir))
    await page.locator('#peer-id', { hasText: donor.peerId }).waitFor({ timeout: 10_000 })
    await page.locator('#donated-empty:not([hidden])').waitFor({ timeout: 10_000 })
    await page.locator('#cpu-empty:not([hidden])').waitFor({ timeout: 10_000 })
    await page.context().close()
  })

  it('shows a browser without a session how to log in, not the page', async () => {
    // its own context, outside the console check: the 401 is the point here
    const context = await browser.newContext()
    const page = await context.newPage()
    const res = await page.goto(`http://127.0.0.1:${donor.apiPort}/dashboard/`)
    assert.equal(res?.status(), 401)
    assert.match(await page.locator('body').innerText(), /run `worldcompute dashboard` for a login link/)
    assert.equal(await page.locator('#peer-id').count(), 0)
    await context.close()
  })

  it('refuses a login link the second time, and the page says how to get a new one', async () => {
    const url = new URL(await loginUrl(donorDir))
    const first = await raw(donor.apiPort, url.pathname + url.search)
    assert.equal(first.status, 302)
    const cookie = String(first.headers['set-cookie'])
    for (const attribute of ['HttpOnly', 'SameSite=Strict', 'Path=/dashboard', 'Max-Age=']) assert.ok(cookie.includes(attribute), cookie)
    const again = await raw(donor.apiPort, url.pathname + url.search)
    assert.equal(again.status, 401)
    assert.match(again.text, /worldcompute dashboard/)
    assert.equal(again.headers['set-cookie'], undefined)
    const made = await raw(donor.apiPort, '/dashboard/login?token=made-up')
    assert.equal(made.status, 401)
  })

  it('answers the page\'s own requests only: a foreign Origin, a cross-site fetch, a foreign Host or no session are refused', async () => {
    const port = donor.apiPort
    const cookie = await sessionCookie(port, donorDir)
    const own = `http://127.0.0.1:${port}`
    const ok = await raw(port, '/dashboard/api/v1/status', { headers: { cookie, origin: own, 'sec-fetch-site': 'same-origin' } })
    assert.equal(ok.status, 200, ok.text)
    assert.equal((JSON.parse(ok.text) as { peerId: string }).peerId, donor.peerId)
    assert.equal((await raw(port, '/dashboard/api/v1/status', { headers: { cookie, origin: `http://localhost:${port}` } })).status, 200)
    for (const origin of ['http://evil.example', `http://localhost:${port + 1}`, 'null']) {
      const res = await raw(port, '/dashboard/api/v1/status', { headers: { cookie, origin } })
      assert.equal(res.status, 403, origin)
      assert.equal(errorCode(res), 'FORBIDDEN_ORIGIN')
    }
    const crossSite = await raw(port, '/dashboard/api/v1/status', { headers: { cookie, 'sec-fetch-site': 'same-site' } })
    assert.equal(errorCode(crossSite), 'FORBIDDEN_ORIGIN')
    const postWithoutOrigin = await raw(port, '/dashboard/api/v1/status', { method: 'POST', headers: { cookie }, body: '{}' })
    assert.equal(errorCode(postWithoutOrigin), 'FORBIDDEN_ORIGIN')
    const foreignHost = await raw(port, '/dashboard/', { headers: { cookie, host: 'evil.example' } })
    assert.equal(errorCode(foreignHost), 'FORBIDDEN_HOST')
    const noSession = await raw(port, '/dashboard/api/v1/status', { headers: { origin: own } })
    assert.equal(noSession.status, 401)
    assert.equal(errorCode(noSession), 'UNAUTHORISED')
    assert.equal((await raw(port, '/dashboard/', { headers: { cookie: `wc_dashboard_${port}=forged` } })).status, 401)
    const otherPort = `wc_dashboard_${port + 1}=${cookie.split('=')[1]}`
    assert.equal((await raw(port, '/dashboard/', { headers: { cookie: otherPort } })).status, 401, 'a session is only good under the cookie name of its own port')
  })

  it('gives a session only the routes the page uses, and keeps the bearer-token API closed to browsers', async () => {
    const port = donor.apiPort
    const cookie = await sessionCookie(port, donorDir)
    const origin = `http://127.0.0.1:${port}`
    assert.equal(errorCode(await raw(port, '/dashboard/api/v1/ping', { method: 'POST', headers: { cookie, origin }, body: '{"target":"x"}' })), 'NOT_FOUND')
    assert.equal(errorCode(await raw(port, '/dashboard/api/v1/jobs', { method: 'POST', headers: { cookie, origin }, body: '{}' })), 'METHOD_NOT_ALLOWED')
    assert.equal(errorCode(await raw(port, '/dashboard/api/v1/dashboard/login-token', { method: 'POST', headers: { cookie, origin }, body: '{}' })), 'NOT_FOUND')
    assert.equal(errorCode(await raw(port, '/dashboard/api//evil.example/v1/status', { headers: { cookie } })), 'NOT_FOUND')
    const token = readFileSync(dataDirPaths(donorDir).apiToken, 'utf8').trim()
    const bearerWithOrigin = await raw(port, '/v1/status', { headers: { authorization: `Bearer ${token}`, origin } })
    assert.equal(errorCode(bearerWithOrigin), 'FORBIDDEN_ORIGIN')
    assert.equal(errorCode(await raw(port, '/v1/status', { headers: { cookie } })), 'UNAUTHORISED')
    assert.equal(errorCode(await raw(port, '/v1/dashboard/login-token', { method: 'POST', headers: { cookie, origin } })), 'FORBIDDEN_ORIGIN')
    assert.equal(errorCode(await raw(port, '/v1/dashboard/login-token', { method: 'POST' })), 'UNAUTHORISED')
  })

  it('serves uPlot from the installed dependency, with the content types a strict browser needs', async () => {
    const cookie = await sessionCookie(donor.apiPort, donorDir)
    const types: Record<string, RegExp> = { '/dashboard/': /^text\/html/, '/dashboard/app.js': /^text\/javascript/, '/dashboard/style.css': /^text\/css/, '/dashboard/uplot.js': /^text\/javascript/, '/dashboard/uplot.css': /^text\/css/ }
    for (const [path, type] of Object.entries(types)) {
      const res = await raw(donor.apiPort, path, { headers: { cookie } })
      assert.equal(res.status, 200, path)
      assert.match(String(res.headers['content-type']), type, path)
      assert.equal(res.headers['x-content-type-options'], 'nosniff')
    }
    assert.match((await raw(donor.apiPort, '/dashboard/uplot.js', { headers: { cookie } })).text, /uPlot/)
  })

  it('logged no console error in the browser', () => {
    assert.deepEqual(consoleErrors, [])
  })
})
