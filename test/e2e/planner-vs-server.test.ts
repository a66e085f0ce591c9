import assert from 'node:assert/strict';
import { it } from 'node:test';
import { COMPARISON_SCENARIOS, comparePlannerWithServer } from '../../bench/planner-vs-server.ts';
import { PG_URL } from '../helpers/db.ts';

/**
 * The planner must predict the real server: the same burst through the simulator and through
 * a real server calling the provider simulator over HTTP, completion p50 and p95 within 15 %.
 * (npm run bench -- planner runs both comparison scenarios and reports ETA accuracy too.)
 */
it("predicts the real server's completion times within 15 %", async () => {
  const setup = COMPARISON_SCENARIOS[1]!;
  const result = await comparePlannerWithServer({
    ...setup,
    ...(PG_URL ? { databaseUrl: await freshDatabase() } : {}),
  });
  const detail = JSON.stringify(result);
  assert.equal(result.tasks, 20);
  assert.ok(
    Math.abs(result.error_p50) <= 0.15,
    `p50 off by ${(result.error_p50 * 100).toFixed(1)} %: ${detail}`,
  );
  assert.ok(
    Math.abs(result.error_p95) <= 0.15,
    `p95 off by ${(result.error_p95 * 100).toFixed(1)} %: ${detail}`,
  );
});

async function freshDatabase(): Promise<string> {
  const { createPostgresDatabase } = await import('../helpers/db.ts');
  const { after } = await import('node:test');
  const created = await createPostgresDatabase();
  after(() => created.drop());
  return created.url;
}
