import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { buildConnector } from 'undici';
import { AppError, coerceError } from '../errors.ts';
import type { AddressPolicy } from './address-policy.ts';

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a host name to every address it has, like `dns.lookup(name, { all: true })`. */
export type HostLookup = (hostname: string) => Promise<readonly ResolvedAddress[]>;

export const systemLookup: HostLookup = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/**
 * The address to connect to for `hostname`: the host itself when it is an IP literal, else the
 * first address DNS gives. Refused (input_url_forbidden) when any address the name resolves to is
 * not allowed, so a name mixing public and private answers cannot be used to reach the private one.
 */
export async function resolveAllowedAddress(
  hostname: string,
  policy: AddressPolicy,
  lookup: HostLookup,
): Promise<string> {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (isIP(host) !== 0) {
    throwIfRefused(policy.refusal(host, host));
    return host;
  }
  let addresses: readonly ResolvedAddress[];
  try {
    addresses = await lookup(host);
  } catch (error) {
    const code = coerceError(error).code;
    const reason = typeof code === 'string' ? code : coerceError(error).message;
    throw new AppError('input_fetch_failed', `Could not resolve ${host}: ${reason}`, { cause: error });
  }
  const first = addresses[0];
  if (first === undefined)
    throw new AppError('input_fetch_failed', `Could not resolve ${host}: no addresses`);
  for (const { address } of addresses) throwIfRefused(policy.refusal(host, address));
  return first.address;
}

function throwIfRefused(refusal: string | undefined): void {
  if (refusal !== undefined)
    throw new AppError('input_url_forbidden', `Refusing to fetch the input URL: ${refusal}`);
}

/**
 * An undici connector that resolves the host itself, checks the address against the policy and
 * then connects to exactly that address — the check and the connection can never see different
 * DNS answers (DNS rebinding). TLS still verifies the certificate against the original host name.
 */
export function createGuardedConnector(
  policy: AddressPolicy,
  lookup: HostLookup,
  connectToAddress: buildConnector.connector = buildConnector({}),
): buildConnector.connector {
  return (options, callback) => {
    resolveAllowedAddress(options.hostname, policy, lookup).then(
      (address) => {
        const servername =
          options.servername ?? (isIP(options.hostname) === 0 ? options.hostname : undefined);
        connectToAddress(
          { ...options, hostname: address, ...(servername === undefined ? {} : { servername }) },
          callback,
        );
      },
      (error: unknown) => callback(coerceError(error), null),
    );
  };
}
