import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { registerPlanCommand } from '../../src/cli/plan.ts';
import { simulate } from '../../src/sim/engine.ts';
import { summarize } from '../../src/sim/metrics.ts';
import { renderHtml, renderSweepHtml } from '../../src/sim/report-html.ts';
import { renderText } from '../../src/sim/report-text.ts';
import { parseSweep, parseTargets, runSweep } from '../../src/sim/sweep.ts';
import { sixtyUsers } from './helpers.ts';

function assertSelfContained(html: string): void {
  assert.match(html, /^<!doctype html>/);
  assert.ok(html.includes('<svg'), 'has inline SVG charts');
  for (const banned of ['<script', '<link', '<img', '<iframe', 'src=', '@import', 'url('])
    assert.ok(!html.includes(banned), `no ${banned}`);
  // The only URL is the SVG namespace, which is a name, not a fetched asset.
  const urls = html.match(/https?:\/\/[^"' )]+/g) ?? [];
  assert.deepEqual([...new Set(urls)], ['http://www.w3.org/2000/svg']);
}

describe('reports', () => {
  const { config, scenario } = sixtyUsers(3);
  const run = simulate(config, scenario);
  const report = summarize(run, config, scenario);

  it('the HTML report is one self-contained file with the queue-depth and wait charts', () => {
    const html = renderHtml(report, run);
    assertSelfContained(html);
    assert.ok(html.includes('Queue depth over time'));
    assert.ok(html.includes('Queue wait (submit → first job start), CDF'));
    assert.ok(html.includes('Completion time'));
    assert.ok((html.match(/<svg/g) ?? []).length >= 3);
  });

  it('the sweep report is self-contained too and marks the best value', () => {
    const result = runSweep(config, scenario, parseSweep('keys=2..5'), parseTargets('p95_wait=15s'));
    const html = renderSweepHtml(result);
    assertSelfContained(html);
    assert.ok(html.includes('class="best"'));
    assert.ok(html.includes('Smallest <b>keys</b>'));
  });

  it('the text report has the per-plan table, throughput, queue depth, providers and keys', () => {
    const text = renderText(report);
    for (const s of ['wait p50', 'completion p50', 'throughput:', 'queue depth', 'gemini/key1', 'max in 60s'])
      assert.ok(text.includes(s), s);
  });
});

describe('darkroom plan', () => {
  function runCli(args: string[]): { out: string; code: number | undefined } {
    const program = new Command('darkroom').exitOverride();
    registerPlanCommand(program);
    const chunks: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    const before = process.exitCode;
    process.stdout.write = ((chunk: string | Uint8Array) => {
      chunks.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      program.parse(['node', 'darkroom', 'plan', ...args]);
    } finally {
      process.stdout.write = write;
    }
    const code = process.exitCode === undefined ? undefined : Number(process.exitCode);
    process.exitCode = before;
    return { out: chunks.join(''), code };
  }

  it('prints JSON and writes the HTML report for a seed scenario', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'darkroom-plan-'));
    try {
      const out = path.join(dir, 'report.html');
      const { out: stdout } = runCli([
        '--config',
        'scenarios/config-3keys.yaml',
        '--scenario',
        'scenarios/01-sixty-users.yaml',
        '--json',
        '--out',
        out,
      ]);
      const json = JSON.parse(stdout) as {
        overall: { submitted: number; wait: { p95: number } };
        rateLimited: number;
      };
      assert.equal(json.overall.submitted, 60);
      assert.ok(json.overall.wait.p95 > 60, 'the last 15 users wait for the RPM window');
      assert.equal(json.rateLimited, 0);
      assertSelfContained(readFileSync(out, 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sweeps and names the smallest value meeting the target; exits 1 when none does', () => {
    const ok = runCli([
      '-c',
      'scenarios/config-3keys.yaml',
      '-s',
      'scenarios/01-sixty-users.yaml',
      '--sweep',
      'keys=1..6',
      '--target',
      'p95_wait=20s',
    ]);
    assert.match(ok.out, /smallest keys meeting p95_wait=20s: 4/);
    assert.equal(ok.code, undefined);
    const none = runCli([
      '-c',
      'scenarios/config-3keys.yaml',
      '-s',
      'scenarios/01-sixty-users.yaml',
      '--sweep',
      'keys=1..2',
      '--target',
      'p95_wait=20s',
      '--json',
    ]);
    assert.equal((JSON.parse(none.out) as { best: number | null }).best, null);
    assert.equal(none.code, 1);
  });
});
