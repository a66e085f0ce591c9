import { isIP } from 'node:net';
import type { Config } from '../config/load.ts';
import { AppError } from '../errors.ts';
import { createAddressPolicy, type AddressPolicy } from '../inputs/address-policy.ts';

/** The SSRF rules of URL inputs (`inputs.allowPrivateUrls`, `inputs.allowHosts`) for webhook targets. */
export function webhookAddressPolicy(config: Config): AddressPolicy {
  return createAddressPolicy({
    allowPrivate: config.inputs.allowPrivateUrls,
    allowHosts: config.inputs.allowHosts,
  });
}

/**
 * Checks a submitted `webhook_url`: absolute http(s), no credentials, and when the host is an IP
 * literal, an allowed address. Host names are resolved and checked at each delivery (DNS can
 * change), by the guarded connector.
 */
export function checkWebhookUrl(config: Config, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new AppError('validation_failed', 'webhook_url: not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new AppError('validation_failed', 'webhook_url: only http and https URLs are allowed');
  if (url.username || url.password)
    throw new AppError('validation_failed', 'webhook_url: credentials in the URL are not allowed');
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (isIP(host) !== 0) {
    const refusal = webhookAddressPolicy(config).refusal(host, host);
    if (refusal !== undefined) throw new AppError('webhook_url_forbidden', `webhook_url: ${refusal}`);
  }
  return url.toString();
}
