import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { comparePaths, GuestPathError, isNormalGuestPath, isUnder, normaliseGuestPath } from '../../src/core/tree.ts'

describe('guest paths', () => {
  it('normalises repeated slashes, "." segments and a trailing slash', () => {
    assert.equal(normaliseGuestPath('//data/./in//'), '/data/in')
    assert.equal(normaliseGuestPath('/'), '/')
  })

  it('refuses a relative path, ".." and NUL with GuestPathError', () => {
    for (const bad of ['data', '/data/../etc', '/a/..', '/a\0b', '']) {
      assert.throws(() => normaliseGuestPath(bad), (err: unknown) => err instanceof GuestPathError && err.code === 'GUEST_PATH_INVALID', bad)
    }
  })

  it('tells normalised paths from others', () => {
    assert.equal(isNormalGuestPath('/data/a.txt'), true)
    assert.equal(isNormalGuestPath('/data/'), false)
    assert.equal(isNormalGuestPath('/data/./a'), false)
    assert.equal(isNormalGuestPath('data'), false)
  })

  it('says whether a path lies under a directory without matching a mere prefix', () => {
    assert.equal(isUnder('/data/a', '/data'), true)
    assert.equal(isUnder('/database', '/data'), false)
    assert.equal(isUnder('/x', '/'), true)
  })

  it('sorts by UTF-8 bytes, the same on every machine', () => {
    assert.deepEqual(['/b', '/é', '/a', '/Z'].sort(comparePaths), ['/Z', '/a', '/b', '/é'])
  })
})
