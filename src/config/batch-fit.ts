import { requestsFor, resolveCapabilities } from '../providers/capabilities.ts';
import type { ResolvedProvider } from './load.ts';

/**
 * A generate job is admitted only when all its requests fit at once on one key and on the
 * provider, so a batch that makes more requests than any key or the provider allows would wait
 * forever. Returns the problem, or undefined when the batch fits.
 */
export function checkBatchFits(provider: ResolvedProvider, batchSize: number): string | undefined {
  const caps = resolveCapabilities(provider);
  const requests = requestsFor(batchSize, caps.maxImagesPerRequest);
  if (requests <= 1) return undefined;
  const what = `a batch of ${batchSize} images is ${requests} requests on provider "${provider.name}" (${caps.source}: ${caps.maxImagesPerRequest} image${caps.maxImagesPerRequest === 1 ? '' : 's'} per request)`;
  if (requests > provider.concurrency)
    return `${what}, more than providers.${provider.name}.concurrency (${provider.concurrency}); lower batchSize or raise the concurrency`;
  // All of a job's requests go out at once on one key.
  const fits = provider.keys.some((k) => !k.disabled && k.concurrency >= requests && k.rpm >= requests);
  if (!fits)
    return `${what}, and no enabled key allows ${requests} requests at once (concurrency and rpm); lower batchSize or raise providers.${provider.name}.keys[].concurrency`;
  return undefined;
}
