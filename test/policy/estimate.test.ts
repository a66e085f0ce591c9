import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callsPerSecond, estimateEtaSeconds, serviceSeconds } from '../../src/policy/estimate.ts';

const provider = { concurrency: 5, rpm: 600, meanCallMs: 8000 };

describe('ETA estimates', () => {
  it('throughput is the smaller of concurrency ÷ latency and RPM', () => {
    assert.equal(callsPerSecond(provider), 5 / 8);
    assert.equal(callsPerSecond({ concurrency: 60, rpm: 45, meanCallMs: 8000 }), 45 / 60);
  });

  it('a Pro task alone: beautify, then 14 batches over 5 slots in 3 waves, then a store wave (document 02 corrected)', () => {
    const pro = { calls: 15, serialCalls: 1, storeUnits: 70, storeConcurrency: 10, meanStoreMs: 2000 };
    // 8 s + 3 × 8 s + 2 s, not 163 s
    assert.equal(serviceSeconds(pro, provider), 34);
    assert.equal(estimateEtaSeconds(0, pro, provider), 34);
    assert.equal(estimateEtaSeconds(50, pro, provider), 34 + 80);
  });
});
