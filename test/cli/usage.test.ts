import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'

describe('usage errors name what is possible', () => {
  it('evidence without a subcommand lists the subcommands, exit 2', async () => {
    const res = await runCli(['evidence'])
    assert.equal(res.code, 2)
    assert.match(res.stderr, /subcommands: validate/)
    assert.doesNotMatch(res.stderr, /unknown subcommand ""/)
  })

  it('daemon --json is refused at once with what to use instead, exit 2', async () => {
    const res = await runCli(['daemon', '--json', '--data-dir', '/nonexistent/wc-usage-test'])
    assert.equal(res.code, 2)
    assert.match(res.stderr, /--log-format json/)
  })
})
