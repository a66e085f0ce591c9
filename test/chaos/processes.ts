import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'darkroom.cjs');

export type ProcRole = 'api' | 'scheduler' | 'worker';

export interface Proc {
  /** `api`, `scheduler-1`, `worker-7`: also its PostgreSQL application_name (`chaos-<name>`). */
  name: string;
  role: ProcRole;
  child: ChildProcess;
  pid: number;
  exited: Promise<number | string>;
  alive: boolean;
  stopped: boolean;
}

/**
 * The darkroom processes of a run, each `darkroom serve --role <role>` as a real child process.
 * Their output goes to one file per process under the run's directory; `PGAPPNAME` names each
 * one's PostgreSQL sessions so the run can watch them in pg_stat_activity.
 */
export class Processes {
  readonly all: Proc[] = [];
  private counters: Record<ProcRole, number> = { api: 0, scheduler: 0, worker: 0 };
  private logs: WriteStream[] = [];

  private readonly logDir: string;
  private readonly configFor: (role: ProcRole) => string;

  constructor(logDir: string, configFor: (role: ProcRole) => string) {
    this.logDir = logDir;
    this.configFor = configFor;
  }

  spawn(role: ProcRole): Proc {
    this.counters[role] += 1;
    const name = role === 'api' ? 'api' : `${role}-${this.counters[role]}`;
    const log = createWriteStream(path.join(this.logDir, `${name}.log`));
    this.logs.push(log);
    const child = spawn(process.execPath, [BIN, 'serve', '--config', this.configFor(role), '--role', role], {
      env: { ...process.env, DARKROOM_LOG_LEVEL: 'warn', PGAPPNAME: `chaos-${name}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    const proc: Proc = {
      name,
      role,
      child,
      pid: child.pid!,
      alive: true,
      stopped: false,
      exited: new Promise((resolve) =>
        child.on('exit', (code, signal) => {
          proc.alive = false;
          resolve(code ?? signal ?? -1);
        }),
      ),
    };
    this.all.push(proc);
    return proc;
  }

  live(role: ProcRole): Proc[] {
    return this.all.filter((p) => p.role === role && p.alive);
  }

  byPid(pid: number): Proc | undefined {
    return this.all.find((p) => p.pid === pid);
  }

  signal(proc: Proc, signal: NodeJS.Signals): void {
    if (!proc.alive) return;
    if (signal === 'SIGSTOP') proc.stopped = true;
    if (signal === 'SIGCONT') proc.stopped = false;
    proc.child.kill(signal);
  }

  async killAll(): Promise<void> {
    for (const p of this.all) {
      if (!p.alive) continue;
      if (p.stopped) p.child.kill('SIGCONT');
      p.child.kill('SIGKILL');
    }
    await Promise.all(this.all.map((p) => p.exited));
    for (const log of this.logs) log.end();
  }
}
