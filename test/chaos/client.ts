import { appendFileSync } from 'node:fs';
import type { ChaosPlan, SubmitStep, WorkStep } from './plan.ts';

/** One request the client made and what it saw: the auditor's "client log". */
export interface ClientEntry {
  t: number;
  op: 'submit' | 'resubmit_order' | 'cancel' | 'adjust';
  n?: number;
  user?: string;
  order?: string;
  idempotencyKey?: string;
  delta?: number;
  note?: string;
  /** HTTP status, or 0 when no answer came (connection error, timeout). */
  status: number;
  taskId?: string;
  code?: string;
}

const REQUEST_TIMEOUT_MS = 20_000;
const SUBMIT_TRIES = 8;

/**
 * Plays the plan's workload against the API as an app would: a submit that got no answer or a
 * 5xx is sent again with the same Idempotency-Key (that is what the key is for); cancels and
 * credit adjustments are sent once and their outcome logged as seen. Every request and answer
 * goes to the client log (memory and a JSONL file).
 */
export class ChaosClient {
  readonly log: ClientEntry[] = [];
  /** Task ids the API acknowledged, by submit number. */
  readonly acknowledged = new Map<number, string>();
  private readonly pending = new Set<Promise<void>>();

  private readonly base: string;
  private readonly plan: ChaosPlan;
  private readonly logFile: string;
  private readonly startedAt: number;

  constructor(base: string, plan: ChaosPlan, logFile: string, startedAt: number) {
    this.base = base;
    this.plan = plan;
    this.logFile = logFile;
    this.startedAt = startedAt;
  }

  /** Runs every step at its time; resolves when every request has been answered or given up. */
  async run(shouldStop: () => boolean): Promise<void> {
    const submits = new Map<number, SubmitStep>();
    for (const step of this.plan.work) if (step.kind === 'submit') submits.set(step.n, step);
    for (const step of this.plan.work) {
      const wait = this.startedAt + step.at - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (shouldStop()) break;
      this.track(this.execute(step, submits));
    }
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private track(work: Promise<void>): void {
    const p = work.catch(() => {}).finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  private async execute(step: WorkStep, submits: Map<number, SubmitStep>): Promise<void> {
    switch (step.kind) {
      case 'submit': {
        const key = `idem-${this.plan.seed}-${step.n}`;
        if (step.doubleSend)
          await Promise.all([this.submit(step, key, 'submit'), this.submit(step, key, 'submit')]);
        else await this.submit(step, key, 'submit');
        return;
      }
      case 'resubmit_order': {
        const original = submits.get(step.of)!;
        await this.submit(original, `idem-${this.plan.seed}-${step.of}-again`, 'resubmit_order');
        return;
      }
      case 'cancel': {
        const id = this.acknowledged.get(step.of);
        if (!id) return;
        const answer = await this.request('POST', `/v1/tasks/${id}/cancel`, undefined);
        this.record({ op: 'cancel', n: step.of, taskId: id, status: answer.status, code: answer.code });
        return;
      }
      case 'adjust': {
        const note = `chaos ${this.plan.seed} at ${step.at}`;
        const answer = await this.request('POST', `/v1/admin/users/${step.user}/credits`, {
          delta: step.delta,
          reason: note,
        });
        this.record({
          op: 'adjust',
          user: step.user,
          delta: step.delta,
          note,
          status: answer.status,
          code: answer.code,
        });
      }
    }
  }

  private async submit(
    step: SubmitStep,
    idempotencyKey: string,
    op: 'submit' | 'resubmit_order',
  ): Promise<void> {
    const body = {
      user_id: step.user,
      order_id: step.order,
      type: step.type,
      plan: step.plan,
      prompt: `chaos ${this.plan.seed} #${step.n}`,
    };
    for (let attempt = 1; attempt <= SUBMIT_TRIES; attempt++) {
      const answer = await this.request('POST', '/v1/tasks', body, { 'idempotency-key': idempotencyKey });
      this.record({
        op,
        n: step.n,
        user: step.user,
        order: step.order,
        idempotencyKey,
        status: answer.status,
        ...(answer.id ? { taskId: answer.id } : {}),
        ...(answer.code ? { code: answer.code } : {}),
      });
      if (answer.status >= 200 && answer.status < 300 && answer.id) {
        if (op === 'submit') this.acknowledged.set(step.n, answer.id);
        return;
      }
      if (answer.status !== 0 && answer.status < 500) return; // refused (402, 409, 429…): final
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }

  private async request(
    method: string,
    path: string,
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; id?: string; code?: string }> {
    try {
      const res = await fetch(`${this.base}${path}`, {
        method,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const json = (await res.json().catch(() => ({}))) as { id?: string; error?: { code?: string } };
      return {
        status: res.status,
        ...(typeof json.id === 'string' ? { id: json.id } : {}),
        ...(json.error?.code ? { code: json.error.code } : {}),
      };
    } catch (error) {
      return { status: 0, code: (error as Error).name };
    }
  }

  private record(entry: Omit<ClientEntry, 't'>): void {
    const full = { t: Date.now(), ...entry };
    this.log.push(full);
    appendFileSync(this.logFile, `${JSON.stringify(full)}\n`);
  }
}
