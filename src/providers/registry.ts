import { readFileSync } from 'node:fs';
import type { Config, ResolvedProvider } from '../config/load.ts';
import { ConfigError } from '../config/load.ts';
import { DEFAULT_GEMINI_MODEL, resolveCapabilities } from './capabilities.ts';
import { createComfyUIProvider } from './comfyui.ts';
import { withRequestLimit } from './fan-out.ts';
import { createGeminiProvider } from './gemini.ts';
import { createOpenAIProvider } from './openai.ts';
import { DEFAULT_OPENAI_IMAGE_MODEL, SIMULATOR_IMAGE_MODEL } from './openai-models.ts';
import { createSimProvider } from './sim.ts';
import type { ProviderAdapter } from './types.ts';

/**
 * One adapter per configured provider. A `sim` provider runs in-process unless it has a
 * `baseUrl`: then it is `darkroom fake-provider` over HTTP, spoken to in the OpenAI images
 * wire format (the fake serves every sim provider of the config under `/p/<name>`).
 */
export function createProviderAdapter(p: ResolvedProvider, seed: number): ProviderAdapter {
  return withRequestLimit(createSingleAdapter(p, seed), resolveCapabilities(p).maxImagesPerRequest);
}

function createSingleAdapter(p: ResolvedProvider, seed: number): ProviderAdapter {
  const model = p.model;
  switch (p.type) {
    case 'sim':
      if (p.baseUrl)
        return createOpenAIProvider({
          baseUrl: simulatorUrl(p.baseUrl, p.name),
          model: SIMULATOR_IMAGE_MODEL,
          timeoutMs: p.timeoutMs,
        });
      return createSimProvider({
        latencyMs: p.sim.latencyMs,
        jitterMs: p.sim.jitterMs,
        errorRate: p.sim.errorRate,
        timeoutMs: p.timeoutMs,
        seed,
      });
    case 'gemini':
      return createGeminiProvider({
        ...(p.baseUrl ? { baseUrl: p.baseUrl } : {}),
        model: model ?? DEFAULT_GEMINI_MODEL,
        timeoutMs: p.timeoutMs,
      });
    case 'openai':
      // size, quality, response_format… come from the provider's, step's or task's params.
      return createOpenAIProvider({
        ...(p.baseUrl ? { baseUrl: p.baseUrl } : {}),
        model: model ?? DEFAULT_OPENAI_IMAGE_MODEL,
        timeoutMs: p.timeoutMs,
      });
    case 'comfyui': {
      let workflow: object;
      try {
        workflow = JSON.parse(readFileSync(p.workflow!, 'utf8')) as object;
      } catch (error) {
        throw new ConfigError(
          `providers.${p.name}.workflow: cannot load ${p.workflow}: ${(error as Error).message}`,
        );
      }
      return createComfyUIProvider({ baseUrl: p.baseUrl!, workflow, timeoutMs: p.timeoutMs });
    }
  }
}

/** `darkroom fake-provider` serves each simulated provider under `/p/<name>`. */
export function simulatorUrl(baseUrl: string, name: string): string {
  const trimmed = baseUrl.replace(/\/+$/, '');
  return trimmed.endsWith(`/p/${name}`) ? trimmed : `${trimmed}/p/${encodeURIComponent(name)}`;
}

export function createProviders(config: Config, seed = Date.now() % 2 ** 31): Map<string, ProviderAdapter> {
  return new Map(Object.values(config.providers).map((p, i) => [p.name, createProviderAdapter(p, seed + i)]));
}
