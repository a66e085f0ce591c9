/**
 * Import boundaries of src/, checked by `npm run lint` (dependency-cruiser, `depcruise src`).
 * Why each rule exists is in its comment; docs/architecture.md lists them for readers.
 *
 * Type-only imports (`import type`) are seen (tsPreCompilationDeps) but load no code: the rules
 * say where they are let through.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment:
        'No import cycles in src/ (pipeline ⇄ sim was one): modules form layers, so each can be ' +
        'loaded, tested and reasoned about from the bottom up. A cycle closed only by type-only ' +
        'imports loads no code and is let through.',
      from: { path: '^src/' },
      to: {
        circular: true,
        dependencyTypesNot: ['type-only'],
        viaOnly: { dependencyTypesNot: ['type-only'] },
      },
    },
    {
      name: 'policy-is-pure',
      severity: 'error',
      comment:
        'src/policy holds the pure decisions (no I/O, no clock): it imports only src/policy, ' +
        'src/errors.ts and, type-only, the resolved config shapes of src/config.',
      from: { path: '^src/policy/' },
      to: {
        pathNot: ['^src/policy/', '^src/errors\\.ts$'],
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'policy-types-only-from-config',
      severity: 'error',
      comment: 'src/policy may name config types, nothing else outside src/policy and src/errors.ts.',
      from: { path: '^src/policy/' },
      to: {
        dependencyTypes: ['type-only'],
        pathNot: ['^src/policy/', '^src/errors\\.ts$', '^src/config/'],
      },
    },
    {
      name: 'sql-drivers-only-in-store',
      severity: 'error',
      comment: 'Only src/store talks to the database (pg, PGlite) and holds SQL.',
      from: { path: '^src/', pathNot: '^src/store/' },
      to: {
        path: '(^|/)node_modules/(pg|pg-[^/]+|@electric-sql/pglite)/',
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'store-is-the-bottom-layer',
      severity: 'error',
      comment:
        'src/store (rows and SQL) must not reach up into what uses it; naming a type of another ' +
        'module (an alert rule shape) is allowed.',
      from: { path: '^src/store/' },
      to: {
        path: '^src/(api|pipeline|worker|scheduler|sim|webhooks|alerts|telemetry|cli|capacity)/',
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'sim-runs-without-the-server',
      severity: 'error',
      comment:
        'The planner (src/sim) replays the lifecycle and the admission policy from src/policy; it ' +
        'must not load the server: no pipeline, store, api, worker or scheduler module, not even a type.',
      from: { path: '^src/sim/' },
      to: { path: '^src/(pipeline|store|api|worker|scheduler)/' },
    },
    {
      name: 'api-does-not-run-workers-or-the-scheduler',
      severity: 'error',
      comment:
        'The API process may run without worker or scheduler roles: src/api uses the store and the ' +
        'pipeline, never src/worker, nor src/scheduler beyond its generic wake-up helper.',
      from: { path: '^src/api/' },
      to: { path: '^src/(worker|scheduler)/', pathNot: '^src/scheduler/wakeup\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.json', '.d.ts'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
