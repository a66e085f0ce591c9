import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Where `specifier` (a sibling module named as in the sources, `./x.ts`) is for a caller at
 * `from` (its `import.meta.url`): the `.ts` file when the caller runs from src/ through tsx, the
 * `.js` file tsc wrote when it runs compiled from dist/ (tsc rewrites import specifiers, not
 * strings in `new URL(...)`).
 */
export function moduleThreadUrl(from: string, specifier: string): URL {
  const compiled = from.endsWith('.js');
  return new URL(compiled ? specifier.replace(/\.ts$/, '.js') : specifier, from);
}

/**
 * Starts a worker thread running `specifier` (`./x.ts`, resolved against the caller's
 * `import.meta.url`). Compiled (dist/), the thread loads the `.js` module directly. From the
 * sources, the thread must load TypeScript, and tsx's loader is not inherited by worker threads:
 * its entry is a small data: module that registers tsx, then imports the `.ts` module.
 */
export function startModuleThread(from: string, specifier: string, options?: WorkerOptions): Worker {
  const url = moduleThreadUrl(from, specifier);
  if (!url.pathname.endsWith('.ts')) return new Worker(url, options);
  const code = `import { register } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))};
register();
await import(${JSON.stringify(url.href)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), options);
}
