import type { Logger } from 'pino';
import { coerceError } from '../errors.ts';

export interface Periodic {
  /** Runs the task now (coalesced with a run in progress). */
  kick(): void;
  stop(): Promise<void>;
}

/**
 * Runs `fn` every `intervalMs` (measured from the end of one run to the start of the next),
 * never two runs at once, logging failures instead of stopping. `intervalMs` is read before
 * each wait, so it may depend on state (a standby polls the lease slower).
 */
export function every(
  name: string,
  intervalMs: () => number,
  fn: () => Promise<void>,
  log: Logger,
): Periodic {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;

  const run = (): void => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    if (timer) clearTimeout(timer);
    timer = undefined;
    running = fn()
      .catch((error: unknown) => log.error({ err: coerceError(error) }, `${name} failed; retrying`))
      .finally(() => {
        running = undefined;
        if (stopped) return;
        if (again) {
          again = false;
          setImmediate(run);
        } else timer = setTimeout(run, intervalMs());
      });
  };
  timer = setTimeout(run, 0);
  return {
    kick: run,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
