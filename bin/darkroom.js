#!/usr/bin/env node
// Runs darkroom: the compiled JavaScript in dist/ (built by `npm install`, see scripts/build.mjs)
// when it was built from the current sources, else the TypeScript sources through tsx, which
// costs memory (tsx's loader in the main thread and in each worker thread) but needs no build.
// DARKROOM_FROM_SOURCE=1 runs the sources whatever dist/ holds (the tests do).
import { distIsCurrent } from './build-state.js';

const fromSource = process.env.DARKROOM_FROM_SOURCE === '1';
if (!fromSource && distIsCurrent()) {
  const { main } = await import('../dist/cli/main.js');
  await main(process.argv);
} else {
  if (!fromSource)
    process.stderr.write(
      'darkroom: dist/ is missing or older than src/ (`npm run build` compiles it); running the TypeScript sources through tsx\n',
    );
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import('../src/cli/main.ts');
  await main(process.argv);
}
