import { Command, InvalidArgumentError, Option } from 'commander';
import { ROLES, startServer, type Role } from '../server.ts';
import { registerFakeProviderCommand } from './fake-provider.ts';
import { registerOpsCommands } from './ops.ts';
import { registerLoadtestCommand } from './loadtest.ts';
import { registerPlanCommand } from './plan.ts';
import { loadOrExit, withCommonOptions, type CommonOptions } from './common.ts';

function parsePort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port number (0-65535)');
  return n;
}

function parseRoles(value: string): Role[] {
  const roles = value
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  for (const r of roles)
    if (!(ROLES as readonly string[]).includes(r))
      throw new InvalidArgumentError(`unknown role "${r}" (roles: ${ROLES.join(', ')})`);
  if (roles.length === 0) throw new InvalidArgumentError('name at least one role');
  return roles as Role[];
}

export function buildCli(): Command {
  const program = new Command('darkroom')
    .description('Self-hosted task server for AI image generation')
    .showHelpAfterError()
    .version('0.1.0');

  withCommonOptions(
    program.command('serve').description('run the API, scheduler and workers (any subset with --role)'),
  )
    .option('-p, --port <port>', 'HTTP port (env PORT; default 8080)', parsePort)
    .addOption(
      new Option('--role <roles>', `comma list of roles to run: ${ROLES.join(', ')}`)
        .argParser(parseRoles)
        .default([...ROLES], 'all'),
    )
    .action(async (opts: CommonOptions & { role: Role[] }) => {
      const config = loadOrExit(opts);
      let server: Awaited<ReturnType<typeof startServer>>;
      try {
        server = await startServer(config, { roles: opts.role });
      } catch (error) {
        const e = error as NodeJS.ErrnoException;
        const why =
          e.code === 'EADDRINUSE'
            ? `port ${config.server.port} is already in use: stop the other process, or choose another with --port or PORT`
            : e.code === 'ECONNREFUSED'
              ? `cannot reach the database (${e.message}); check DATABASE_URL`
              : (e.stack ?? e.message);
        process.stderr.write(`darkroom: could not start: ${why}\n`);
        process.exit(1);
      }
      let signals = 0;
      const shutdown = (signal: string) => {
        signals++;
        if (signals > 1) process.exit(1);
        server.ctx.log.info({ signal }, 'shutting down: finishing running jobs');
        void server.stop().then(() => process.exit(0));
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    });

  withCommonOptions(
    program.command('migrate').description('apply pending database migrations and exit'),
  ).action(async (opts: CommonOptions) => {
    const config = loadOrExit(opts);
    const { openDb } = await import('../store/index.ts');
    const { migrate } = await import('../store/migrate.ts');
    const db = await openDb(config);
    try {
      const applied = await migrate(db);
      process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
    } finally {
      await db.close();
    }
  });

  withCommonOptions(
    program
      .command('check-config')
      .description('validate the configuration and print it with secrets hidden'),
  ).action(async (opts: CommonOptions) => {
    const config = loadOrExit(opts);
    const { redactConfig } = await import('../config/load.ts');
    process.stdout.write(`${JSON.stringify(redactConfig(config), null, 2)}\n`);
  });

  registerFakeProviderCommand(program);
  registerPlanCommand(program);
  registerLoadtestCommand(program);
  registerOpsCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildCli().parseAsync(argv);
}
