/**
 * Lists the longest functions in src/ (`npm run lint:functions`): every
 * function, method, accessor, constructor and arrow function with a body,
 * measured in lines from its first to its last line by the TypeScript
 * compiler's own parser, nested functions counted inside their parents too.
 *
 *   node scripts/function-lengths.ts [--over 80] [--max 120] [--allow 3] [DIR]
 *
 * Exits 1 when more than --allow functions are longer than --over lines, or
 * any is longer than --max: the size rule of this repository's style.
 */
import { globSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import ts from 'typescript'

const { values, positionals } = parseArgs({
  options: {
    over: { type: 'string', default: '80' },
    max: { type: 'string', default: '120' },
    allow: { type: 'string', default: '3' },
    top: { type: 'string', default: '15' }
  },
  allowPositionals: true
})
const dir = positionals[0] ?? 'src'
const over = Number(values.over)
const max = Number(values.max)
const allow = Number(values.allow)

interface Measured { file: string, name: string, line: number, lines: number }

function nameOf (node: ts.Node, sf: ts.SourceFile): string {
  const named = node as { name?: ts.Node }
  if (named.name != null) return named.name.getText(sf)
  const parent = node.parent
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) return parent.name.getText(sf)
  if (ts.isCallExpression(parent)) return `(callback of ${parent.expression.getText(sf).slice(0, 40)})`
  return '(anonymous)'
}

function measure (file: string): Measured[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
  const out: Measured[] = []
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && (node as { body?: ts.Node }).body != null) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line
      out.push({ file, name: nameOf(node, sf), line: start + 1, lines: end - start + 1 })
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return out
}

const all = globSync(`${dir}/**/*.ts`).filter(f => !f.endsWith('.d.ts')).sort().flatMap(measure)
all.sort((a, b) => b.lines - a.lines)
const long = all.filter(m => m.lines > over)
for (const m of all.slice(0, Math.max(Number(values.top), long.length))) {
  console.log(`${String(m.lines).padStart(4)}  ${m.file}:${m.line}  ${m.name}`)
}
const tooLong = all.filter(m => m.lines > max)
console.log(`${all.length} functions in ${dir}/; ${long.length} longer than ${over} lines (allowed: ${allow}); ${tooLong.length} longer than ${max} (allowed: 0)`)
process.exit(long.length > allow || tooLong.length > 0 ? 1 : 0)
