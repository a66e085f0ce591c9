import type { Command } from 'commander';
import type { Config } from '../config/load.ts';
import { startFakeProvider, type FakeProviderOptions } from '../providers/fake-server/index.ts';
import { loadOrExit, withCommonOptions, type CommonOptions } from './common.ts';

/** Every `type: sim` provider of the config, as the simulator server sees it. */
export function fakeProviderOptionsFrom(config: Config): FakeProviderOptions {
  return {
    providers: Object.values(config.providers)
      .filter((p) => p.type === 'sim')
      .map((p) => ({
        name: p.name,
        keys: p.keys.map((k) => ({
          id: k.id,
          rpm: k.rpm,
          concurrency: k.concurrency,
          ...(k.secret ? { secret: k.secret } : {}),
        })),
        latencyMs: p.sim.latencyMs,
        jitterMs: p.sim.jitterMs,
        errorRate: p.sim.errorRate,
        retryAfterSeconds: Math.ceil(p.defaultRetryAfterMs / 1000),
      })),
  };
}

export function registerFakeProviderCommand(program: Command): void {
  withCommonOptions(
    program
      .command('fake-provider')
      .description(
        'run the provider simulator over HTTP (Gemini, OpenAI images and ComfyUI wire formats) for every sim provider in the config',
      ),
  )
    .option('-p, --port <port>', 'port to listen on', (v) => Number(v), 8188)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .action(async (opts: CommonOptions & { port: number; host: string }) => {
      const config = loadOrExit({ ...opts, port: undefined });
      const options = fakeProviderOptionsFrom(config);
      if (options.providers.length === 0) {
        process.stderr.write('darkroom: the config has no `type: sim` provider to simulate\n');
        process.exit(2);
      }
      const handle = await startFakeProvider({ ...options, port: opts.port, host: opts.host });
      process.stdout.write(
        `fake provider listening on ${handle.url} (providers under /p/<name>: ${options.providers.map((p) => p.name).join(', ')})\n`,
      );
      const stop = () => void handle.close().then(() => process.exit(0));
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}
