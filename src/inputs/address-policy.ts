import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

type IPAddress = ipaddr.IPv4 | ipaddr.IPv6;

/**
 * `public`: a global unicast address, always fetchable.
 * `private`: loopback, RFC 1918, CGNAT, IPv6 unique-local — fetchable with `allowPrivate`.
 * `forbidden`: link-local (cloud metadata), unspecified, multicast, broadcast, reserved, … —
 * fetchable only when listed in `allowHosts`.
 */
export type AddressClass = { kind: 'public' } | { kind: 'private' | 'forbidden'; range: string };

const PRIVATE_RANGES = new Set(['loopback', 'private', 'carrierGradeNat', 'uniqueLocal']);

/** Global unicast IPv6 is 2000::/3; anything outside it (e.g. ::7f00:1, IPv4-compatible) is not public. */
const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');
const NAT64_WELL_KNOWN = ipaddr.IPv6.parseCIDR('64:ff9b::/96');

export function classifyAddress(address: string): AddressClass {
  if (isIP(address) === 0) return { kind: 'forbidden', range: 'not an IP address' };
  return classifyParsed(ipaddr.parse(address));
}

function classifyParsed(ip: IPAddress): AddressClass {
  if (ip.kind() === 'ipv4') return classifyByRange(ip.range());
  const v6 = ip as ipaddr.IPv6;
  const embedded = embeddedIPv4(v6);
  if (embedded !== undefined) {
    const inner = classifyParsed(embedded);
    return inner.kind === 'public' ? inner : { kind: inner.kind, range: `${v6.range()}(${inner.range})` };
  }
  if (!v6.match(GLOBAL_UNICAST_V6)) {
    const range = v6.range();
    return classifyByRange(range === 'unicast' ? 'outside global unicast' : range);
  }
  return classifyByRange(v6.range());
}

function classifyByRange(range: string): AddressClass {
  if (range === 'unicast') return { kind: 'public' };
  return { kind: PRIVATE_RANGES.has(range) ? 'private' : 'forbidden', range };
}

/** The IPv4 address an IPv6 address stands for (mapped, translated, NAT64, 6to4), if any. */
function embeddedIPv4(ip: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const bytes = ip.toByteArray();
  switch (ip.range()) {
    case 'ipv4Mapped':
    case 'rfc6145':
      return new ipaddr.IPv4(bytes.slice(12, 16));
    case 'rfc6052':
      // Only the well-known /96 prefix embeds the address in the last 32 bits; 64:ff9b:1::/48 is
      // for local networks and stays forbidden.
      return ip.match(NAT64_WELL_KNOWN) ? new ipaddr.IPv4(bytes.slice(12, 16)) : undefined;
    case '6to4':
      return new ipaddr.IPv4(bytes.slice(2, 6));
    default:
      return undefined;
  }
}

export interface AddressPolicyOptions {
  allowPrivate?: boolean;
  /** Host names (exact, case-insensitive), IP addresses or CIDR ranges that skip the address checks. */
  allowHosts?: readonly string[];
}

export interface AddressPolicy {
  /** Why connecting to `address` for a URL naming `hostname` is refused, or undefined when it is allowed. */
  refusal(hostname: string, address: string): string | undefined;
}

export function createAddressPolicy(options: AddressPolicyOptions): AddressPolicy {
  const allowPrivate = options.allowPrivate ?? false;
  const hostnames = new Set<string>();
  const ranges: [IPAddress, number][] = [];
  for (const entry of options.allowHosts ?? []) {
    const trimmed = stripBrackets(entry.trim());
    if (isIP(trimmed) !== 0) {
      const ip = ipaddr.process(trimmed);
      ranges.push([ip, ip.kind() === 'ipv4' ? 32 : 128]);
    } else if (ipaddr.isValidCIDR(trimmed)) {
      ranges.push(normaliseRange(ipaddr.parseCIDR(trimmed)));
    } else if (trimmed !== '') {
      hostnames.add(normaliseHostname(trimmed));
    }
  }

  return {
    refusal(hostname: string, address: string): string | undefined {
      if (hostnames.has(normaliseHostname(hostname))) return undefined;
      if (isIP(address) === 0) return `${address} is not an IP address`;
      const ip = ipaddr.process(address);
      if (ranges.some(([base, bits]) => base.kind() === ip.kind() && ip.match(base, bits))) return undefined;
      const verdict = classifyAddress(address);
      if (verdict.kind === 'public') return undefined;
      if (verdict.kind === 'private' && allowPrivate) return undefined;
      return `${describeTarget(hostname, address)} is a ${verdict.range} address`;
    },
  };
}

function describeTarget(hostname: string, address: string): string {
  const host = stripBrackets(hostname);
  return host === address ? address : `${host} resolves to ${address}, which`;
}

/** An IPv4-mapped CIDR such as ::ffff:10.0.0.0/104 becomes 10.0.0.0/8, matching what process() yields. */
function normaliseRange([base, bits]: [IPAddress, number]): [IPAddress, number] {
  if (base.kind() === 'ipv6' && (base as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    return [(base as ipaddr.IPv6).toIPv4Address(), bits - 96];
  }
  return [base, bits];
}

export function normaliseHostname(hostname: string): string {
  return stripBrackets(hostname).toLowerCase().replace(/\.$/, '');
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
