/**
 * The fault table every provider adapter suite runs against the provider simulator: a server error
 * or a malformed body is transient (retried elsewhere), a refusal or an answer without a usable
 * image is permanent with a stable reason, and no outcome ever carries the key's secret.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Fault } from '../../src/providers/fake-server/index.ts';
import type { ProviderOutcome } from '../../src/providers/types.ts';

/** Queues `list` on the simulator's provider `provider`; `simUrl` is read when called (set in a before hook). */
export function simFaults(simUrl: () => string, provider: string): (list: Fault[]) => Promise<void> {
  return async (list) => {
    const response = await fetch(`${simUrl()}/_sim/faults`, {
      method: 'POST',
      body: JSON.stringify({ provider, faults: list }),
    });
    assert.equal(response.status, 200);
  };
}

export function noSecretIn(secret: string): (outcome: ProviderOutcome) => void {
  return (outcome) =>
    assert.ok(!JSON.stringify(outcome).includes(secret), `secret leaked into ${JSON.stringify(outcome)}`);
}

export interface PermanentFault {
  fault: Fault;
  /** The adapter's `reason` for it (each provider names its refusal its own way). */
  reason: string;
  /** Added to the test's name when one fault is checked under several adapter settings. */
  label?: string;
  /** A call with other adapter settings than `FaultTable.call`. */
  call?: () => Promise<ProviderOutcome>;
}

export interface FaultTable {
  inject: (list: Fault[]) => Promise<void>;
  call: () => Promise<ProviderOutcome>;
  assertNoSecret: (outcome: ProviderOutcome) => void;
  permanent: readonly PermanentFault[];
}

export function itClassifiesFaults(table: FaultTable): void {
  for (const fault of ['http500', 'http503', 'malformed_json'] as const) {
    it(`classifies ${fault} as transient`, async () => {
      await table.inject([fault]);
      const outcome = await table.call();
      assert.equal(outcome.kind, 'transient');
      table.assertNoSecret(outcome);
    });
  }
  for (const { fault, reason, label, call } of table.permanent) {
    it(`classifies ${fault}${label ? ` (${label})` : ''} as permanent (${reason})`, async () => {
      await table.inject([fault]);
      const outcome = await (call ?? table.call)();
      assert.equal(outcome.kind, 'permanent');
      assert.equal(outcome.reason, reason);
      table.assertNoSecret(outcome);
    });
  }
}
