import type { Command } from 'commander';
import { ConfigError, loadConfig, type Config } from '../config/load.ts';

export interface CommonOptions {
  config?: string;
  home?: string;
  port?: number;
  databaseUrl?: string;
}

/** Loads the configuration or exits with the precise message naming the bad field. */
export function loadOrExit(opts: CommonOptions): Config {
  try {
    return loadConfig({
      file: opts.config,
      overrides: {
        ...(opts.home !== undefined ? { home: opts.home } : {}),
        ...(opts.port !== undefined ? { port: opts.port } : {}),
        ...(opts.databaseUrl !== undefined ? { databaseUrl: opts.databaseUrl } : {}),
      },
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`darkroom: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

export function withCommonOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'YAML or JSON config file (env DARKROOM_CONFIG)')
    .option(
      '--home <dir>',
      'data directory: embedded database, local files (env DARKROOM_HOME; default ./.darkroom)',
    )
    .option(
      '--database-url <url>',
      'PostgreSQL URL; without it the embedded PGlite is used (env DATABASE_URL)',
    );
}
