import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DashboardLogins, sessionCookie, sessionCookieName, sessionFromCookie } from '../../src/api/dashboard-auth.ts'

/** A clock the test moves by hand. */
function clock (start = 1_000_000): { now: () => number, advance: (ms: number) => void } {
  let t = start
  return { now: () => t, advance: (ms) => { t += ms } }
}

describe('DashboardLogins', () => {
  it('turns a login token into a session once and refuses it the second time', () => {
    const logins = new DashboardLogins()
    const { token } = logins.issueToken()
    const session = logins.redeem(token)
    assert.ok(session != null)
    assert.equal(logins.valid(session.id), true)
    assert.equal(logins.redeem(token), undefined)
  })

  it('refuses a token after its lifetime (60 s by default) and one it never issued', () => {
    const c = clock()
    const logins = new DashboardLogins({ now: c.now })
    const { token, expiresAt } = logins.issueToken()
    assert.equal(expiresAt, c.now() + 60_000)
    c.advance(60_000)
    assert.equal(logins.redeem(token), undefined)
    assert.equal(logins.redeem('never-issued'), undefined)
    assert.equal(logins.redeem(''), undefined)
  })

  it('ends a session after its lifetime and knows no session it did not create', () => {
    const c = clock()
    const logins = new DashboardLogins({ now: c.now, sessionTtlMs: 5000 })
    const session = logins.redeem(logins.issueToken().token)
    assert.ok(session != null)
    assert.equal(logins.sessionTtlSeconds, 5)
    c.advance(4999)
    assert.equal(logins.valid(session.id), true)
    c.advance(1)
    assert.equal(logins.valid(session.id), false)
    assert.equal(logins.valid(undefined), false)
    assert.equal(logins.valid('forged'), false)
  })

  it('keeps at most maxLoginTokens unused tokens and maxSessions sessions, dropping the oldest', () => {
    const logins = new DashboardLogins({ maxLoginTokens: 2, maxSessions: 2 })
    const [a, b, c] = [logins.issueToken(), logins.issueToken(), logins.issueToken()]
    assert.equal(logins.redeem(a.token), undefined)
    const s1 = logins.redeem(b.token)
    const s2 = logins.redeem(c.token)
    const s3 = logins.redeem(logins.issueToken().token)
    assert.ok(s1 != null && s2 != null && s3 != null)
    assert.deepEqual([s1, s2, s3].map(s => logins.valid(s.id)), [false, true, true])
  })

  it('issues tokens and sessions of 256 random bits, each different', () => {
    const logins = new DashboardLogins()
    const tokens = new Set(Array.from({ length: 8 }, () => logins.issueToken().token))
    assert.equal(tokens.size, 8)
    for (const t of tokens) assert.match(t, /^[\w-]{43}$/)
  })
})

describe('the session cookie', () => {
  it('is HttpOnly, SameSite=Strict, limited to /dashboard and expires', () => {
    const header = sessionCookie({ id: 'abc', expiresAt: 0 }, 3600, 7767)
    assert.equal(header, 'wc_dashboard_7767=abc; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=3600')
  })

  it('is found among other cookies, and not in a cookie whose name only contains its name', () => {
    assert.equal(sessionFromCookie(`a=1; ${sessionCookieName(7767)}=xyz; b=2`, 7767), 'xyz')
    assert.equal(sessionFromCookie(`x${sessionCookieName(7767)}=no`, 7767), undefined)
    assert.equal(sessionFromCookie(undefined, 7767), undefined)
  })

  it('is named after the API\'s port, so two donors on one host keep a session each', () => {
    const both = `${sessionCookieName(7767)}=first; ${sessionCookieName(7768)}=second`
    assert.equal(sessionFromCookie(both, 7767), 'first')
    assert.equal(sessionFromCookie(both, 7768), 'second')
  })
})
