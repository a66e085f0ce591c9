/**
 * A sleep that a notification can cut short. Wake-ups that arrive while nobody sleeps are
 * remembered, so a NOTIFY between two ticks is never lost.
 */
export interface Wakeup {
  wake(): void;
  sleep(ms: number): Promise<void>;
}

export function createWakeup(): Wakeup {
  let pending = false;
  let resolveSleep: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  return {
    wake() {
      if (resolveSleep) {
        const r = resolveSleep;
        resolveSleep = undefined;
        if (timer) clearTimeout(timer);
        r();
      } else pending = true;
    },
    sleep(ms) {
      if (pending) {
        pending = false;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => {
        resolveSleep = resolve;
        timer = setTimeout(() => {
          resolveSleep = undefined;
          resolve();
        }, ms);
      });
    },
  };
}
