import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { subcommandsIn } from '../../src/cli/commands/completion.ts'
import { runCli } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'

const dir = tempDir('wc-completion-')
after(() => { dir.cleanup() })

function shellExists (shell: string): boolean {
  return spawnSync(shell, ['-c', 'exit 0']).status === 0
}

/** Sources the bash script and asks `_worldcompute` for the words of a command line whose last word is being typed. */
function bashComplete (script: string, line: string[]): string[] {
  const words = line.map(w => `'${w}'`).join(' ')
  const program = `source '${script}'
COMP_WORDS=(${words}); COMP_CWORD=${line.length - 1}
_worldcompute
printf '%s\\n' "\${COMPREPLY[@]}"`
  const res = spawnSync('bash', ['--norc', '--noprofile', '-c', program], { encoding: 'utf8' })
  assert.equal(res.status, 0, res.stderr)
  return res.stdout.split('\n').filter(w => w !== '')
}

describe('worldcompute completion', () => {
  const bashFile = join(dir.path, 'worldcompute.bash')

  before(async () => {
    const res = await runCli(['completion', 'bash'])
    assert.equal(res.code, 0, res.stderr)
    writeFileSync(bashFile, res.stdout)
  })

  it('prints a bash script that bash parses', () => {
    const res = spawnSync('bash', ['-n', bashFile], { encoding: 'utf8' })
    assert.equal(res.status, 0, res.stderr)
  })

  it('registers _worldcompute for the worldcompute command when sourced', () => {
    const res = spawnSync('bash', ['--norc', '--noprofile', '-c', `source '${bashFile}' && complete -p worldcompute`], { encoding: 'utf8' })
    assert.equal(res.status, 0, res.stderr)
    assert.match(res.stdout, /-F _worldcompute worldcompute/)
  })

  it('completes a command name, a subcommand and the flags that command parses', () => {
    assert.ok(bashComplete(bashFile, ['worldcompute', 'jo']).includes('job'))
    assert.deepEqual(bashComplete(bashFile, ['worldcompute', 'job', 's']).sort(), ['status', 'submit'])
    assert.deepEqual(bashComplete(bashFile, ['worldcompute', 'job', 'submit', '--rep']), ['--replicas'])
    assert.ok(bashComplete(bashFile, ['worldcompute', 'daemon', '--max-']).includes('--max-job-memory'))
    assert.deepEqual(bashComplete(bashFile, ['worldcompute', 'evidence', 'v']), ['validate'])
    assert.deepEqual(bashComplete(bashFile, ['worldcompute', 'completion', '']).sort(), ['bash', 'zsh'])
  })

  it('leaves the value of a flag that takes one to the shell\'s file completion', () => {
    assert.deepEqual(bashComplete(bashFile, ['worldcompute', 'status', '--data-dir', '']), [])
    assert.deepEqual(bashComplete(bashFile, ['worldcompute', 'job', 'submit', '--input', '--']), [])
  })

  it('prints a zsh script that zsh parses', async (t) => {
    if (!shellExists('zsh')) { t.skip('zsh is not installed'); return }
    const res = await runCli(['completion', 'zsh'])
    assert.equal(res.code, 0, res.stderr)
    const file = join(dir.path, '_worldcompute')
    writeFileSync(file, res.stdout)
    const check = spawnSync('zsh', ['-n', file], { encoding: 'utf8' })
    assert.equal(check.status, 0, check.stderr)
  })

  it('refuses a shell it does not know with a usage error', async () => {
    const res = await runCli(['completion', 'fish'])
    assert.equal(res.code, 2)
    assert.match(res.stderr, /bash or zsh, got "fish"/)
  })

  it('reads subcommands from the usage lines of a help text, not from its prose', () => {
    const help = 'worldcompute job submit MODULE.wasm [--json]\nworldcompute job list [--json]\n\nworldcompute job result prints…\nworldcompute other thing'
    assert.deepEqual(subcommandsIn('job', help), ['submit', 'list', 'result'])
    assert.deepEqual(subcommandsIn('completion', 'worldcompute completion bash|zsh'), ['bash', 'zsh'])
    assert.deepEqual(subcommandsIn('ping', 'worldcompute ping TARGET [--count N]'), [])
  })
})
