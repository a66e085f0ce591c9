import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { tempDir } from './config.ts';
import { waitFor } from './wait.ts';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'darkroom.cjs');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export function writeConfigFile(config: Record<string, unknown>): string {
  const file = path.join(tempDir('darkroom-cfg-'), 'darkroom.yaml');
  writeFileSync(file, YAML.stringify(config));
  return file;
}

export interface DarkroomProcess {
  child: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  kill(signal: NodeJS.Signals): void;
}

/** Runs `darkroom <args>` as a real child process (the installed bin, through tsx). */
export function spawnDarkroom(args: string[], env: Record<string, string> = {}): DarkroomProcess {
  // The test names its database in the config it passes; an inherited DATABASE_URL (the one
  // `npm test` may be run with, for the tests' own PostgreSQL) would override it in the child.
  const { DATABASE_URL: _inherited, ...inherited } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...inherited, DARKROOM_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  return { child, output: () => out, exited, kill: (s) => child.kill(s) };
}

/** Waits until `GET <url>/readyz` answers 200. */
export async function waitReady(url: string, proc?: DarkroomProcess, timeoutMs = 180_000): Promise<void> {
  await waitFor(
    `${url}/readyz`,
    async () => {
      if (proc && proc.child.exitCode !== null) throw new Error(`process exited early:\n${proc.output()}`);
      const res = await fetch(`${url}/readyz`);
      return res.status === 200;
    },
    { timeoutMs, intervalMs: 200 },
  );
}

/**
 * `darkroom serve` on a config whose `server.port` is `port`, on `databaseUrl` when given (else its
 * embedded PGlite), ready to answer.
 */
export async function startServe(
  input: Record<string, unknown>,
  port: number,
  databaseUrl: string | undefined,
  env: Record<string, string> = {},
): Promise<{ proc: DarkroomProcess; base: string }> {
  const file = writeConfigFile({ ...input, ...(databaseUrl ? { database: { url: databaseUrl } } : {}) });
  const proc = spawnDarkroom(['serve', '--config', file], env);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(base, proc);
  return { proc, base };
}

/** SIGTERM, and the process must drain and exit 0. */
export async function stopCleanly(proc: DarkroomProcess | undefined): Promise<void> {
  if (!proc) return;
  proc.kill('SIGTERM');
  const code = await proc.exited;
  if (code !== 0) throw new Error(`serve did not exit cleanly on SIGTERM (${code}):\n${proc.output()}`);
}
