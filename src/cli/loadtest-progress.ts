import cliProgress from 'cli-progress';
import type { SubmitRecord } from './loadtest-driver.ts';

/**
 * Progress of a load test on stderr (stdout keeps the report, `--json` included): a bar from
 * cli-progress when both are a terminal, else a line every 10 s.
 */

export interface Progress {
  submitted(record: SubmitRecord): void;
  followed(state: { ended: number; open: number }): void;
  stop(): void;
}

export function progressFor(
  total: number,
  tty = Boolean(process.stdout.isTTY && process.stderr.isTTY),
): Progress {
  let sent = 0;
  let refused = 0;
  let ended = 0;
  const started = Date.now();
  if (tty) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format:
          'tasks ended {bar} {value}/{total} · submitted {sent} ({refused} refused) · {duration_formatted}',
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { sent: 0, refused: 0 });
    return {
      submitted(r) {
        sent++;
        if (!r.taskId) refused++;
        bar.update(ended, { sent, refused });
      },
      followed(s) {
        ended = s.ended;
        bar.update(ended, { sent, refused });
      },
      stop: () => bar.stop(),
    };
  }
  let lastLine = 0;
  const line = (force = false) => {
    const now = Date.now();
    if (!force && now - lastLine < 10_000) return;
    lastLine = now;
    process.stderr.write(
      `loadtest: ${Math.round((now - started) / 1000)}s · submitted ${sent}/${total} (${refused} refused) · ended ${ended}\n`,
    );
  };
  return {
    submitted(r) {
      sent++;
      if (!r.taskId) refused++;
      line();
    },
    followed(s) {
      ended = s.ended;
      line();
    },
    stop: () => line(true),
  };
}
