import type { Command } from 'commander';
import { adjustCredits, getBalance } from '../store/credits.ts';
import { openDb } from '../store/index.ts';
import { migrate } from '../store/migrate.ts';
import { loadOrExit, withCommonOptions, type CommonOptions } from './common.ts';

export function registerOpsCommands(program: Command): void {
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
