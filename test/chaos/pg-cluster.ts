import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

/** The newest PostgreSQL server binaries installed under /usr/lib/postgresql/<major>/bin. */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  let majors: string[];
  try {
    majors = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  } catch {
    throw new Error(`no PostgreSQL server binaries under ${root} (install postgresql)`);
  }
  if (!majors[0]) throw new Error(`no PostgreSQL server binaries under ${root}`);
  return path.join(root, majors[0], 'bin');
}

/**
 * A private PostgreSQL cluster the chaos run owns, so it can stop it hard and start it again.
 * initdb and pg_ctl refuse to run as root: as root they run as the `postgres` user (runuser).
 */
export class PgCluster {
  readonly port: number;
  readonly dir: string;
  private readonly bin = binDir();
  private readonly asRoot = process.getuid?.() === 0;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  static async create(port: number): Promise<PgCluster> {
    const dir = mkdtempSync(path.join(tmpdir(), 'darkroom-chaos-pg-'));
    const cluster = new PgCluster(port, dir);
    if (cluster.asRoot) chownSync(dir, Number(await cluster.idOf('-u')), Number(await cluster.idOf('-g')));
    await cluster.exec('initdb', [
      '-D',
      cluster.dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '--no-sync',
      '-E',
      'UTF8',
    ]);
    await cluster.start();
    return cluster;
  }

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  async start(): Promise<void> {
    const options = [
      `-p ${this.port}`,
      "-c listen_addresses='127.0.0.1'",
      `-c unix_socket_directories='${this.dir}'`,
      '-c max_connections=200',
      // Fast but durable against what the suite does: an immediate stop is a crash of the server
      // processes, not of the machine, so WAL handed to the kernel survives it (fsync and full
      // pages only matter for an OS crash). synchronous_commit must stay on: off, a commit
      // answers before its WAL is written, and seed 403 lost a submit committed 48 ms before
      // an immediate stop, which the auditor rightly reported as a task lost.
      '-c fsync=off',
      '-c synchronous_commit=on',
      '-c full_page_writes=off',
      '-c shared_buffers=64MB',
    ].join(' ');
    await this.exec('pg_ctl', [
      '-D',
      this.dataDir,
      '-l',
      path.join(this.dir, 'log'),
      '-o',
      options,
      '-w',
      'start',
    ]);
  }

  /** Stops without a checkpoint or goodbye to clients, as a crash would (recovery at the next start). */
  async stopImmediate(): Promise<void> {
    await this.exec('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']);
  }

  async restartImmediate(downMs: number): Promise<void> {
    await this.stopImmediate();
    await new Promise((resolve) => setTimeout(resolve, downMs));
    await this.start();
  }

  /** How to start this cluster again by hand (a failed run keeps it). */
  startCommand(): string {
    const cmd = `${path.join(this.bin, 'pg_ctl')} -D ${this.dataDir} -o "-p ${this.port} -c unix_socket_directories='${this.dir}'" start`;
    return this.asRoot ? `runuser -u postgres -- ${cmd}` : cmd;
  }

  async createDatabase(name: string): Promise<string> {
    const client = new pg.Client({ connectionString: this.url() });
    await client.connect();
    await client.query(`CREATE DATABASE ${name}`);
    await client.end();
    return this.url(name);
  }

  async destroy(): Promise<void> {
    await this.exec('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']).catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async idOf(flag: '-u' | '-g'): Promise<string> {
    return (await run('id', [flag, 'postgres'])).stdout.trim();
  }

  private async exec(tool: string, args: string[]): Promise<void> {
    const file = path.join(this.bin, tool);
    const [cmd, argv] = this.asRoot ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args];
    await run(cmd, argv, { cwd: this.dir, timeout: 120_000 });
  }
}
