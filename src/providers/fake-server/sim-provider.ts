import type { IncomingMessage, ServerResponse } from 'node:http';
import { FaultQueue } from './faults.ts';
import { delay, hangUntilClosed, send, sendTrickle, sendTruncated, type Reply } from './http.ts';
import { KeyLimiter } from './key-limiter.ts';
import { mulberry32 } from '../../images/prng.ts';
import type { FakeProviderConfig, FakeProviderTotals, FakeStats } from './types.ts';

/** What every protocol handler needs from the server around it. */
export interface SimContext {
  now(): number;
  /** Waits out a request's latency (real timers unless the options inject a sleep). */
  sleep(ms: number): Promise<void>;
  trickleMs: number;
  fileTtlMs: number;
  imageSize: number;
  /** Result files served under `/p/<name>/files/<id>` (OpenAI url results), by id. */
  files: Map<string, StoredFile>;
}

export interface StoredFile {
  provider: string;
  bytes: Buffer;
  contentType: string;
  expiresAt: number;
}

/** Faults that change what a generation request returns rather than how it fails. */
export type ContentFault = 'refusal' | 'no_image' | 'not_an_image' | undefined;

/** Why a request is refused with 429: the key's limits, or a scripted fault of one of three shapes. */
export type RateLimitReason = 'rpm' | 'concurrency' | 'scripted' | 'scripted_no_hint' | 'scripted_daily';

const SCRIPTED_429: Partial<Record<string, RateLimitReason>> = {
  http429: 'scripted',
  http429_no_retry_info: 'scripted_no_hint',
  http429_daily: 'scripted_daily',
};

/** How one wire format spells the answers the shared gate gives. */
export interface GenerationProtocol {
  unauthorized(presented: string | undefined): Reply;
  rateLimited(retryAfterMs: number, limiter: KeyLimiter, reason: RateLimitReason): Reply;
  serverError(status: 500 | 503): Reply;
  malformed(): Reply;
}

/** One simulated provider: its keys, scripted faults and seeded randomness. */
export class SimProvider {
  readonly config: FakeProviderConfig;
  readonly faults = new FaultQueue();
  private readonly limiters = new Map<string, KeyLimiter>();
  private random: () => number;
  private inFlight = 0;
  private totals: Omit<FakeProviderTotals, 'faults_queued'> = emptyTotals();

  constructor(config: FakeProviderConfig) {
    this.config = config;
    this.random = mulberry32(config.seed ?? 1);
    for (const key of config.keys) this.limiters.set(key.id, new KeyLimiter(key, { enforceRpm: true }));
  }

  get name(): string {
    return this.config.name;
  }

  /** The key a caller presented: matched by secret when the key has one, else by id. */
  findKey(presented: string | undefined): KeyLimiter | undefined {
    if (!presented) return undefined;
    for (const limiter of this.limiters.values()) {
      const credential = limiter.key.secret ?? limiter.key.id;
      if (credential === presented) return limiter;
    }
    return undefined;
  }

  firstKey(): KeyLimiter | undefined {
    return this.limiters.values().next().value;
  }

  /** latencyMs ± jitterMs, never negative. */
  latency(): number {
    const { latencyMs, jitterMs } = this.config;
    return Math.max(0, latencyMs + (this.random() * 2 - 1) * jitterMs);
  }

  /** A random 500/503 with probability errorRate, else undefined. */
  randomServerError(): 'http500' | 'http503' | undefined {
    if (this.config.errorRate <= 0 || this.random() >= this.config.errorRate) return undefined;
    return this.random() < 0.5 ? 'http500' : 'http503';
  }

  nextRandom(): number {
    return this.random();
  }

  hintedRetryAfterMs(): number {
    return (this.config.retryAfterSeconds ?? 1) * 1000;
  }

  /** Counts a 429 by its cause. */
  noteRejected(cause: keyof FakeProviderTotals['rejected']): void {
    this.totals.rejected[cause] += 1;
  }

  /** Counts an accepted request in flight across the provider; the returned function ends it (idempotent). */
  holdProviderSlot(): () => void {
    this.inFlight += 1;
    this.totals.max_in_flight = Math.max(this.totals.max_in_flight, this.inFlight);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
    };
  }

  stats(): Omit<FakeStats['providers'][string], 'comfyui'> {
    const keys: FakeStats['providers'][string]['keys'] = {};
    for (const [id, limiter] of this.limiters) keys[id] = limiter.stats();
    return {
      keys,
      totals: {
        max_in_flight: this.totals.max_in_flight,
        rejected: { ...this.totals.rejected },
        faults_queued: this.faults.size,
      },
    };
  }

  reset(): void {
    this.faults.clear();
    this.totals = emptyTotals();
    this.totals.max_in_flight = this.inFlight;
    this.random = mulberry32(this.config.seed ?? 1);
    for (const limiter of this.limiters.values()) limiter.reset();
  }
}

function emptyTotals(): Omit<FakeProviderTotals, 'faults_queued'> {
  return { max_in_flight: 0, rejected: { rpm: 0, concurrency: 0, scripted: 0 } };
}

/**
 * The path every keyed generation request takes: authenticate, scripted 429, rpm and concurrency limits,
 * scripted or random failures, then the protocol's own answer from `produce`, started at once and sent
 * when the latency has passed (or when it is ready, if producing takes longer).
 */
export async function runGeneration(args: {
  ctx: SimContext;
  provider: SimProvider;
  req: IncomingMessage;
  res: ServerResponse;
  presentedKey: string | undefined;
  protocol: GenerationProtocol;
  produce: (fault: ContentFault, limiter: KeyLimiter) => Promise<Reply>;
}): Promise<void> {
  const { ctx, provider, res, protocol } = args;
  const limiter = provider.findKey(args.presentedKey);
  if (!limiter) {
    send(res, protocol.unauthorized(args.presentedKey));
    return;
  }
  const keyId = limiter.key.id;
  limiter.noteRequest();
  const scripted = SCRIPTED_429[provider.faults.peek(keyId) ?? ''];
  if (scripted) {
    provider.faults.take(keyId);
    limiter.noteRejected();
    provider.noteRejected('scripted');
    send(res, protocol.rateLimited(provider.hintedRetryAfterMs(), limiter, scripted));
    return;
  }
  const admission = limiter.tryAcquire(ctx.now());
  if (!admission.ok) {
    limiter.noteRejected();
    provider.noteRejected(admission.reason);
    const retryAfterMs = admission.reason === 'rpm' ? admission.retryAfterMs : provider.hintedRetryAfterMs();
    send(res, protocol.rateLimited(retryAfterMs, limiter, admission.reason));
    return;
  }
  res.once('close', admission.release);
  res.once('close', provider.holdProviderSlot());

  const fault = provider.faults.take(keyId) ?? provider.randomServerError();
  if (fault === 'reset') {
    res.destroy();
    return;
  }
  if (fault === 'hang') {
    await hangUntilClosed(res);
    return;
  }
  // The latency is the time until the answer, as a real provider's includes generating: the answer is
  // produced (images rendered) from the request's arrival and sent at max(latency, production).
  const production = producesAnswer(fault)
    ? args.produce(isContentFault(fault) ? fault : undefined, limiter)
    : undefined;
  // Settled here too, so a client that leaves during the latency leaves no unhandled rejection.
  production?.catch(() => {});
  if (!(await delay(res, provider.latency(), ctx.sleep))) return;
  switch (fault) {
    case 'http500':
    case 'http503':
      send(res, protocol.serverError(fault === 'http500' ? 500 : 503));
      return;
    case 'malformed_json':
      send(res, protocol.malformed());
      return;
    case 'trickle':
      sendTrickle(res, await production!, ctx.trickleMs);
      return;
    case 'truncated':
      sendTruncated(res, await production!);
      return;
    case 'http429': // taken by the scripted-429 check above; unreachable
    case 'http429_no_retry_info':
    case 'http429_daily':
    case 'refusal':
    case 'no_image':
    case 'not_an_image':
    case undefined:
      send(res, await production!);
  }
}

/** Faults whose answer is the protocol's own (possibly altered) reply rather than an error. */
function producesAnswer(fault: string | undefined): boolean {
  return fault !== 'http500' && fault !== 'http503' && fault !== 'malformed_json';
}

function isContentFault(fault: string | undefined): fault is ContentFault {
  return fault === 'refusal' || fault === 'no_image' || fault === 'not_an_image';
}
