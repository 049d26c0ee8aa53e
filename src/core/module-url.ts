/**
 * The URL of a module next to `base` (the caller's `import.meta.url`), for a
 * file started by path (a child process, a worker) rather than imported. The
 * package build rewrites `.ts` import specifiers to `.js`, but not strings,
 * so the extension follows the caller's own: `.ts` run from src/ in a clone,
 * `.js` from dist/ in an installed package.
 */
export function siblingModuleUrl (relative: string, base: string): URL {
  const extension = base.endsWith('.js') ? '.js' : '.ts'
  return new URL(relative.replace(/\.ts$/, extension), base)
}
