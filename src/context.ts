import type { Logger } from 'pino';
import type { Config } from './config/load.ts';
import type { ProviderAdapter } from './providers/types.ts';
import type { Storage } from './storage/types.ts';
import type { Telemetry } from './telemetry/telemetry.ts';
import type { Db } from './store/db.ts';

/** What every part of darkroom is handed instead of reaching for globals. */
export interface Context {
  db: Db;
  config: Config;
  storage: Storage;
  log: Logger;
  /** Adapters by provider name. */
  providers: Map<string, ProviderAdapter>;
  /** Random numbers in [0, 1): injected so tests and the simulator are reproducible. */
  random: () => number;
  /** Metrics and the provider-call log; absent in contexts built for a single tool. */
  telemetry?: Telemetry;
}
