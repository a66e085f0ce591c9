import sharp from 'sharp';
import { errorCode, mapLimit, type Api } from './loadtest-http.ts';
import { isFinal, listUserTasks, type DriveResult, type TaskObject } from './loadtest-driver.ts';

/**
 * The audit after a load test, through the API only: what a team can check against any
 * running server. Each check lists what failed (the first few) so a failed run says where.
 */

export interface Check {
  name: 'submits' | 'terminal' | 'once' | 'images' | 'ledger';
  ok: boolean;
  /** What was checked, in figures. */
  detail: string;
  failures: string[];
}

export interface AuditOptions {
  /** Images decoded with sharp (spread over the run); every image is fetched. */
  decodeSample: number;
  /** Balance of each user before the first submit. */
  before: Map<string, number>;
  /** The key is an admin key: the ledger rows are read too. */
  admin: boolean;
  /** Load-shedding answers that are not failures (the server's documented 429s). */
  tolerated: readonly string[];
}

const SHOW = 10;

function check(name: Check['name'], failures: string[], detail: string): Check {
  return { name, ok: failures.length === 0, detail, failures: failures.slice(0, SHOW) };
}

/** Every submit got an answer the server documents as success or load shedding. */
function submitsCheck(run: DriveResult, opts: AuditOptions): Check {
  const bad = run.records.filter((r) => !r.taskId && !opts.tolerated.includes(`${r.status} ${r.code}`));
  const accepted = run.records.filter((r) => r.taskId).length;
  return check(
    'submits',
    bad.map(
      (r) => `#${r.submission.index} ${r.submission.userId}: ${r.status ?? 'no answer'} ${r.code ?? ''}`,
    ),
    `${accepted} of ${run.records.length} accepted; ${run.records.length - accepted} refused`,
  );
}

function terminalCheck(run: DriveResult, final: Map<string, TaskObject>): Check {
  const bad: string[] = [];
  let n = 0;
  for (const r of run.records) {
    if (!r.taskId) continue;
    n++;
    const t = final.get(r.taskId);
    if (!t) bad.push(`${r.taskId}: not listed for ${r.submission.userId}`);
    else if (!isFinal(t.state)) bad.push(`${t.id}: still ${t.state}`);
  }
  return check('terminal', bad, `${n - bad.length} of ${n} accepted tasks ended`);
}

/** One task per order and per idempotency key; refused submits left no task behind. */
function onceCheck(run: DriveResult, listed: Map<string, TaskObject[]>): Check {
  const bad: string[] = [];
  const byOrder = new Map<string, TaskObject[]>();
  for (const tasks of listed.values())
    for (const t of tasks) if (t.order_id) byOrder.set(t.order_id, [...(byOrder.get(t.order_id) ?? []), t]);
  const ids = new Set<string>();
  for (const r of run.records) {
    const got = byOrder.get(r.submission.orderId) ?? [];
    if (r.taskId) {
      if (ids.has(r.taskId)) bad.push(`${r.taskId}: answered for two submits`);
      ids.add(r.taskId);
      if (got.length !== 1)
        bad.push(`order ${r.submission.orderId}: ${got.length} tasks (${got.map((t) => t.id).join(', ')})`);
      else if (got[0]!.id !== r.taskId)
        bad.push(`order ${r.submission.orderId}: task ${got[0]!.id}, but the submit answered ${r.taskId}`);
    } else if (got.length > 0) {
      bad.push(
        `order ${r.submission.orderId}: refused (${r.status} ${r.code}) yet ${got.length} task(s) exist`,
      );
    }
  }
  const retried = run.records.filter((r) => r.networkRetries + r.inFlightRetries > 0).length;
  return check(
    'once',
    bad,
    `${byOrder.size} orders listed, ${ids.size} tasks answered; ${retried} submits retried`,
  );
}

async function imagesCheck(
  api: Api,
  run: DriveResult,
  final: Map<string, TaskObject>,
  opts: AuditOptions,
): Promise<Check> {
  const bad: string[] = [];
  const links: { task: TaskObject; index: number; url: string; width: number; height: number }[] = [];
  let expected = 0;
  for (const r of run.records) {
    const t = r.taskId ? final.get(r.taskId) : undefined;
    if (!t || !isFinal(t.state)) continue;
    const want = t.state === 'succeeded' ? t.progress.total : t.progress.done;
    if (t.state === 'succeeded') {
      expected += t.progress.total;
      if (r.imagesTotal !== undefined && t.progress.total !== r.imagesTotal)
        bad.push(`${t.id}: total ${t.progress.total}, images_total at submit ${r.imagesTotal}`);
    }
    const indices = new Set(t.images.map((i) => i.index));
    if (t.images.length !== want || indices.size !== t.images.length)
      bad.push(`${t.id} (${t.state}): ${t.images.length} images listed, ${want} expected`);
    for (const i of t.images) {
      if (i.index < 0 || i.index >= t.progress.total)
        bad.push(`${t.id}: image index ${i.index} out of range`);
      links.push({ task: t, index: i.index, url: i.url, width: i.width, height: i.height });
    }
  }
  const step = Math.max(1, Math.floor(links.length / Math.max(1, opts.decodeSample)));
  let decoded = 0;
  let bytes = 0;
  await mapLimit(links, 8, async (link, i) => {
    const where = `${link.task.id} image ${link.index}`;
    try {
      const f = await api.file(link.url);
      if (f.status !== 200 || !f.contentType.startsWith('image/') || f.bytes.length === 0) {
        bad.push(`${where}: ${f.status} ${f.contentType} ${f.bytes.length} bytes`);
        return;
      }
      bytes += f.bytes.length;
      if (i % step === 0 && decoded < opts.decodeSample) {
        decoded++;
        const meta = await sharp(f.bytes).metadata();
        if (meta.width !== link.width || meta.height !== link.height)
          bad.push(`${where}: decodes to ${meta.width}×${meta.height}, listed ${link.width}×${link.height}`);
      }
    } catch (error) {
      bad.push(`${where}: ${(error as Error).message}`);
    }
  });
  const fetched = links.length;
  return check(
    'images',
    bad,
    `${fetched} images fetched (${(bytes / 1e6).toFixed(1)} MB), ${decoded} decoded; succeeded tasks hold ${expected} = Σ images_total`,
  );
}

interface LedgerRow {
  task_id: string | null;
  delta: number;
  reason: string;
}

async function ledgerCheck(api: Api, listed: Map<string, TaskObject[]>, opts: AuditOptions): Promise<Check> {
  const bad: string[] = [];
  let rowsChecked = 0;
  let charged = 0;
  let refunded = 0;
  await mapLimit([...listed.entries()], 8, async ([userId, tasks]) => {
    const res = await api.request('GET', `/v1/users/${encodeURIComponent(userId)}/credits`);
    if (res.status !== 200) {
      bad.push(`${userId}: credits ${res.status} ${errorCode(res.body)}`);
      return;
    }
    const after = (res.body as { balance: number }).balance;
    const before = opts.before.get(userId)!;
    const c = tasks.reduce((a, t) => a + t.credits_charged, 0);
    const f = tasks.reduce((a, t) => a + t.credits_refunded, 0);
    charged += c;
    refunded += f;
    if (before - c + f !== after)
      bad.push(
        `${userId}: ${before} before − ${c} charged + ${f} refunded = ${before - c + f}, balance is ${after}`,
      );
    if (!opts.admin) return;
    const l = await api.request('GET', `/v1/admin/users/${encodeURIComponent(userId)}/credits`);
    const rows = (l.body as { ledger?: LedgerRow[] }).ledger ?? [];
    if (l.status !== 200) {
      bad.push(`${userId}: ledger ${l.status} ${errorCode(l.body)}`);
      return;
    }
    if (rows.length >= 100) return; // the API shows the newest 100 rows: not the whole story
    for (const t of tasks) {
      const mine = rows.filter((r) => r.task_id === t.id);
      const charges = mine.filter((r) => r.reason === 'charge');
      const refunds = mine.filter((r) => r.reason === 'refund').reduce((a, r) => a + r.delta, 0);
      rowsChecked += mine.length;
      if (charges.length !== 1 || charges[0]!.delta !== -t.credits_charged)
        bad.push(
          `${t.id}: ${charges.length} charge rows (${charges.map((r) => r.delta).join(', ')}), charged ${t.credits_charged}`,
        );
      if (refunds !== t.credits_refunded)
        bad.push(`${t.id}: refund rows sum to ${refunds}, refunded ${t.credits_refunded}`);
    }
  });
  return check(
    'ledger',
    bad,
    `${listed.size} users: ${charged} credits charged, ${refunded} refunded` +
      (opts.admin ? `; ${rowsChecked} ledger rows matched to tasks` : ' (balances only: not an admin key)'),
  );
}

export interface Audit {
  ok: boolean;
  checks: Check[];
  /** Every task of the run as the API lists it at the end. */
  final: Map<string, TaskObject>;
}

export async function audit(api: Api, run: DriveResult, opts: AuditOptions): Promise<Audit> {
  const users = [...new Set(run.records.map((r) => r.submission.userId))];
  const listed = new Map<string, TaskObject[]>();
  await mapLimit(users, 8, async (u) => {
    const ours = new Set(
      run.records.filter((r) => r.submission.userId === u).map((r) => r.submission.orderId),
    );
    listed.set(
      u,
      (await listUserTasks(api, u)).filter((t) => t.order_id !== null && ours.has(t.order_id)),
    );
  });
  const final = new Map<string, TaskObject>();
  for (const tasks of listed.values()) for (const t of tasks) final.set(t.id, t);
  const checks = [
    submitsCheck(run, opts),
    terminalCheck(run, final),
    onceCheck(run, listed),
    await imagesCheck(api, run, final, opts),
    await ledgerCheck(api, listed, opts),
  ];
  return { ok: checks.every((c) => c.ok), checks, final };
}
