import { after, before } from 'node:test';
import pino from 'pino';
import type { Config } from '../../src/config/load.ts';
import { startServer, type Role, type RunningServer } from '../../src/server.ts';
import { createPostgresDatabase, type DbKind } from './db.ts';
import { testConfig } from './config.ts';

export type TestServer = RunningServer & { config: Config; baseUrl: string };

/** Starts darkroom in this process on a random port, on a fresh database of `kind`; `stop` also drops it. */
export async function startTestServer(
  kind: DbKind,
  overrides: Parameters<typeof testConfig>[0] = {},
  roles?: Role[],
): Promise<TestServer> {
  const created = kind === 'postgres' ? await createPostgresDatabase() : undefined;
  const config = testConfig({ ...overrides, ...(created ? { database: { url: created.url } } : {}) });
  const server = await startServer(config, { ...(roles ? { roles } : {}), log: pino({ level: 'silent' }) });
  return {
    ...server,
    config,
    baseUrl: server.url ?? '',
    async stop() {
      await server.stop();
      await created?.drop();
    },
  };
}

/** Call at describe level: a server for the suite, started before and stopped after its tests. */
export function useTestServer(
  kind: DbKind,
  overrides: Parameters<typeof testConfig>[0] = {},
  roles?: Role[],
): { server: TestServer } {
  const holder = {} as { server: TestServer };
  before(async () => {
    holder.server = await startTestServer(kind, overrides, roles);
  });
  after(async () => {
    await holder.server?.stop();
  });
  return holder;
}

export async function postJson(
  baseUrl: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

export async function getJson(baseUrl: string, path: string) {
  const res = await fetch(`${baseUrl}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
