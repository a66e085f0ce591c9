import { Option, type Command } from 'commander';
import { createApiKey, keyView } from '../api/auth/manage.ts';
import type { Config } from '../config/load.ts';
import { AppError } from '../errors.ts';
import { checkWebhookUrl } from '../webhooks/url-policy.ts';
import { listApiKeys, revokeApiKey } from '../store/api-keys.ts';
import type { Db } from '../store/db.ts';
import { adjustCredits, getBalance } from '../store/credits.ts';
import { openDb } from '../store/index.ts';
import { migrate } from '../store/migrate.ts';
import { loadOrExit, withCommonOptions, type CommonOptions } from './common.ts';

async function withDb<T>(config: Config, fn: (db: Db) => Promise<T>): Promise<T> {
  const db = await openDb(config);
  try {
    await migrate(db);
    return await fn(db);
  } finally {
    await db.close();
  }
}

function registerKeyCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('create, list and revoke API keys (only a hash of each key is stored)');
  withCommonOptions(
    keys
      .command('create')
      .description('create a key and print it once')
      .addOption(
        new Option('--scope <scope>', 'what the key may do').choices(['app', 'admin']).default('app'),
      )
      .requiredOption('--name <name>', 'a label, e.g. the app that will use the key')
      .option(
        '--webhook-url <url>',
        'default task webhook: tasks submitted with this key (or its user tokens) that name no webhook_url are delivered here',
      ),
  ).action(async (opts: CommonOptions & { scope: 'app' | 'admin'; name: string; webhookUrl?: string }) => {
    const config = loadOrExit(opts);
    let webhookUrl: string | undefined;
    try {
      webhookUrl = opts.webhookUrl === undefined ? undefined : checkWebhookUrl(config, opts.webhookUrl);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      process.stderr.write(`darkroom: --webhook-url: ${error.message} (${error.code})\n`);
      process.exit(2);
    }
    const created = await withDb(config, (db) => createApiKey(db, opts.scope, opts.name, { webhookUrl }));
    process.stdout.write(`${JSON.stringify(created)}\n`);
    process.stderr.write('darkroom: keep this key now; it cannot be shown again.\n');
  });
  withCommonOptions(
    keys.command('list').description('list keys (ids, names, scopes; never the keys)'),
  ).action(async (opts: CommonOptions) => {
    const config = loadOrExit(opts);
    const rows = await withDb(config, (db) => listApiKeys(db));
    for (const row of rows) process.stdout.write(`${JSON.stringify(keyView(row))}\n`);
  });
  withCommonOptions(
    keys.command('revoke <id>').description('revoke a key (and the user tokens it issued)'),
  ).action(async (id: string, opts: CommonOptions) => {
    const config = loadOrExit(opts);
    if (!(await withDb(config, (db) => revokeApiKey(db, id)))) {
      process.stderr.write(`darkroom: no active key has the id "${id}" (see darkroom keys list)\n`);
      process.exit(1);
    }
    process.stdout.write(`${JSON.stringify({ id, revoked: true })}\n`);
  });
}

export function registerOpsCommands(program: Command): void {
  registerKeyCommands(program);
  const credits = program.command('credits').description("read or adjust a user's credit balance");
  withCommonOptions(credits.command('get <user_id>').description('print the balance')).action(
    async (userId: string, opts: CommonOptions) => {
      const config = loadOrExit(opts);
      const db = await openDb(config);
      try {
        await migrate(db);
        const balance = await getBalance(db, userId);
        process.stdout.write(
          `${JSON.stringify({ user_id: userId, balance: balance ?? config.credits.initialGrant, known: balance !== undefined })}\n`,
        );
      } finally {
        await db.close();
      }
    },
  );
  withCommonOptions(
    credits.command('add <user_id> <delta>').description('add (or with a negative delta, remove) credits'),
  ).action(async (userId: string, delta: string, opts: CommonOptions) => {
    const n = Number(delta);
    if (!Number.isInteger(n)) {
      process.stderr.write('darkroom: delta must be an integer\n');
      process.exit(2);
    }
    const config = loadOrExit(opts);
    const db = await openDb(config);
    try {
      await migrate(db);
      const balance = await db.transaction((tx) => adjustCredits(tx, userId, n, config.credits.initialGrant));
      process.stdout.write(`${JSON.stringify({ user_id: userId, balance })}\n`);
    } finally {
      await db.close();
    }
  });
}
