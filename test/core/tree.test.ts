import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { comparePaths, GuestPathError, isNormalGuestPath, isUnder, normaliseGuestPath, findNested } from '../../src/core/tree.ts'

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

  it('finds a path under one of the outer paths (a file, a preopen), and only that', () => {
    assert.deepEqual(findNested(['/d/a', '/d/a/b'], []), { outer: '/d/a', inner: '/d/a/b' })
    assert.deepEqual(findNested(['/d/a'], ['/d/a/b/c']), { outer: '/d/a', inner: '/d/a/b/c' })
    // siblings that sort between a path and what lies under it, and a mere prefix, are not under it
    assert.equal(findNested(['/d/a', '/d/a.txt', '/d/a-b', '/d/ab', '/d/a b'], ['/d/a!', '/d/b']), undefined)
    assert.deepEqual(findNested(['/d/a', '/d/a.txt', '/d/a-b'], ['/d/a!', '/d/a/x']), { outer: '/d/a', inner: '/d/a/x' })
    assert.deepEqual(findNested(['/d/é/x', '/d/é'], []), { outer: '/d/é', inner: '/d/é/x' })
    // directories under directories, and files in them, are what trees are made of
    assert.equal(findNested(['/d/a/b/c', '/d/a/x'], ['/d/a', '/d/a/b', '/e']), undefined)
    // everything lies under the root
    assert.deepEqual(findNested(['/', '/data'], []), { outer: '/', inner: '/data' })
    assert.equal(findNested(['/'], []), undefined)
    assert.equal(findNested([], []), undefined)
  })

  it('sorts by UTF-8 bytes, the same on every machine', () => {
    assert.deepEqual(['/b', '/é', '/a', '/Z'].sort(comparePaths), ['/Z', '/a', '/b', '/é'])
  })
})
