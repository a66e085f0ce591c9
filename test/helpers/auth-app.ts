import { Writable } from 'node:stream';
import { after, before } from 'node:test';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/api/app.ts';
import { createApiKey } from '../../src/api/auth/manage.ts';
import type { Context } from '../../src/context.ts';
import { storageFor } from '../../src/server.ts';
import { createPgliteThreadDb } from '../../src/store/pglite-thread.ts';
import { createPostgresDb } from '../../src/store/postgres.ts';
import { migrate } from '../../src/store/migrate.ts';
import { testConfig } from './config.ts';
import { createPostgresDatabase, type DbKind } from './db.ts';

export const SIGNING_SECRET = 'auth-test-signing-secret';

/** A settable clock for token expiry and rate windows. */
export interface TestClock {
  now: () => Date;
  set(ms: number): void;
  advance(ms: number): void;
}

export function testClock(startMs = Date.UTC(2026, 0, 1, 12, 0, 30)): TestClock {
  let t = startMs;
  return { now: () => new Date(t), set: (ms) => (t = ms), advance: (ms) => (t += ms) };
}

export interface AuthApp {
  app: FastifyInstance;
  ctx: Context;
  clock: TestClock;
  /** Everything the app logged, as JSON lines. */
  logs(): string;
  adminKey: string;
  appKey: string;
  /** PostgreSQL URL of the database; undefined for PGlite. */
  dbUrl: string | undefined;
}

/**
 * An API (no scheduler, no workers) with auth ON over a fresh database of `kind`, an admin key
 * and an app key; routes are called with inject(). `overrides` go into the test config.
 */
export function useAuthApp(kind: DbKind, overrides: Parameters<typeof testConfig>[0] = {}): AuthApp {
  const holder = {} as AuthApp;
  let cleanup: (() => Promise<void>) | undefined;
  before(async () => {
    const created = kind === 'postgres' ? await createPostgresDatabase() : undefined;
    const config = testConfig({
      ...overrides,
      auth: { enabled: true, ...(overrides.auth ?? {}) },
      ...(created ? { database: { url: created.url } } : {}),
    });
    const db = created
      ? await createPostgresDb({ url: created.url, poolSize: 5 })
      : await createPgliteThreadDb(undefined);
    await migrate(db);
    let logged = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logged += chunk.toString();
        done();
      },
    });
    const ctx: Context = {
      db,
      config,
      storage: await storageFor(config, SIGNING_SECRET),
      log: pino({ level: 'info' }, sink),
      providers: new Map(),
      random: Math.random,
    };
    holder.ctx = ctx;
    holder.dbUrl = created?.url;
    holder.clock = testClock();
    holder.logs = () => logged;
    holder.app = await buildApp(ctx, { signingSecret: SIGNING_SECRET, now: holder.clock.now });
    holder.adminKey = (await createApiKey(db, 'admin', 'test admin')).key;
    holder.appKey = (await createApiKey(db, 'app', 'test app')).key;
    cleanup = async () => {
      await holder.app.close();
      await db.close();
      await created?.drop();
    };
  });
  after(async () => {
    await cleanup?.();
  });
  return holder;
}

export function bearer(credential: string): { authorization: string } {
  return { authorization: `Bearer ${credential}` };
}

/** A user token issued through the API by `key`. */
export async function userToken(
  t: AuthApp,
  userId: string,
  key = t.appKey,
  body: unknown = {},
): Promise<string> {
  const res = await t.app.inject({
    method: 'POST',
    url: `/v1/users/${encodeURIComponent(userId)}/tokens`,
    headers: bearer(key),
    payload: body as Record<string, unknown>,
  });
  if (res.statusCode !== 201) throw new Error(`token for ${userId}: ${res.statusCode} ${res.body}`);
  return (res.json() as { token: string }).token;
}

export function submitBody(userId: string, extra: Record<string, unknown> = {}) {
  return { user_id: userId, type: 'photography', plan: 'free', prompt: 'p', ...extra };
}
