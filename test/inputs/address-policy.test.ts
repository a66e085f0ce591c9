import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { buildConnector } from 'undici';
import { AppError } from '../../src/errors.ts';
import { classifyAddress, createAddressPolicy } from '../../src/inputs/address-policy.ts';
import { createGuardedConnector, resolveAllowedAddress } from '../../src/inputs/guarded-connector.ts';
import type { HostLookup } from '../../src/inputs/guarded-connector.ts';

// Nothing in this file opens a socket: addresses are only classified, and the connector under test
// is given a fake "connect to this address" that records its arguments.

describe('classifyAddress', () => {
  const cases: [string, 'public' | 'private' | 'forbidden'][] = [
    ['93.184.216.34', 'public'],
    ['8.8.8.8', 'public'],
    ['2606:4700:4700::1111', 'public'],
    ['127.0.0.1', 'private'],
    ['127.255.255.254', 'private'],
    ['10.0.0.5', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'],
    ['::1', 'private'],
    ['fd00::1', 'private'],
    ['fc00::1', 'private'],
    ['0.0.0.0', 'forbidden'],
    ['0.1.2.3', 'forbidden'],
    ['169.254.169.254', 'forbidden'],
    ['fe80::1', 'forbidden'],
    ['224.0.0.1', 'forbidden'],
    ['239.255.255.250', 'forbidden'],
    ['255.255.255.255', 'forbidden'],
    ['240.0.0.1', 'forbidden'],
    ['192.0.2.1', 'forbidden'],
    ['ff02::1', 'forbidden'],
    ['::', 'forbidden'],
    ['::7f00:1', 'forbidden'], // IPv4-compatible ::127.0.0.1, outside global unicast
    ['64:ff9b:1::a00:1', 'forbidden'], // local-use NAT64 prefix
    ['2001::1', 'forbidden'], // Teredo
    ['2001:db8::1', 'forbidden'], // documentation
    ['::ffff:127.0.0.1', 'private'],
    ['::ffff:7f00:1', 'private'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:169.254.169.254', 'forbidden'],
    ['::ffff:8.8.8.8', 'public'],
    ['64:ff9b::7f00:1', 'private'], // NAT64 of 127.0.0.1
    ['64:ff9b::a9fe:a9fe', 'forbidden'], // NAT64 of 169.254.169.254
    ['64:ff9b::808:808', 'public'], // NAT64 of 8.8.8.8
    ['2002:7f00:1::1', 'private'], // 6to4 of 127.0.0.1
    ['2002:a9fe:a9fe::1', 'forbidden'], // 6to4 of 169.254.169.254
    ['not-an-ip', 'forbidden'],
    ['127.1', 'forbidden'], // never reaches here from a URL, but must not parse as public
  ];
  for (const [address, kind] of cases) {
    it(`${address} is ${kind}`, () => {
      assert.equal(classifyAddress(address).kind, kind);
    });
  }
});

describe('address policy', () => {
  it('refuses private and forbidden addresses by default', () => {
    const policy = createAddressPolicy({});
    assert.equal(policy.refusal('example.com', '93.184.216.34'), undefined);
    assert.match(policy.refusal('127.0.0.1', '127.0.0.1') ?? '', /127\.0\.0\.1 is a loopback address/);
    assert.match(
      policy.refusal('evil.test', '10.0.0.5') ?? '',
      /evil\.test resolves to 10\.0\.0\.5, which is a private/,
    );
  });

  it('allowPrivate opens private ranges but never link-local or multicast', () => {
    const policy = createAddressPolicy({ allowPrivate: true });
    for (const address of [
      '127.0.0.1',
      '10.0.0.5',
      '192.168.0.10',
      '100.64.1.1',
      '::1',
      'fd12::1',
      '::ffff:127.0.0.1',
    ]) {
      assert.equal(policy.refusal('h.test', address), undefined, address);
    }
    for (const address of ['169.254.169.254', 'fe80::1', '0.0.0.0', '224.0.0.1', '::ffff:169.254.169.254']) {
      assert.notEqual(policy.refusal('h.test', address), undefined, address);
    }
  });

  it('allowHosts accepts exact host names, IP addresses and CIDR ranges', () => {
    const policy = createAddressPolicy({
      allowHosts: ['Images.Internal', '10.1.0.0/16', '192.168.5.5', '[fd00::7]', '::ffff:172.20.0.0/112'],
    });
    assert.equal(policy.refusal('images.internal', '10.9.9.9'), undefined);
    assert.equal(policy.refusal('IMAGES.INTERNAL.', '169.254.169.254'), undefined);
    assert.notEqual(policy.refusal('other.internal', '10.9.9.9'), undefined);
    assert.notEqual(policy.refusal('images.internal.evil.test', '10.9.9.9'), undefined);
    assert.equal(policy.refusal('a.test', '10.1.200.3'), undefined);
    assert.equal(policy.refusal('a.test', '::ffff:10.1.200.3'), undefined);
    assert.notEqual(policy.refusal('a.test', '10.2.0.1'), undefined);
    assert.equal(policy.refusal('192.168.5.5', '192.168.5.5'), undefined);
    assert.notEqual(policy.refusal('192.168.5.6', '192.168.5.6'), undefined);
    assert.equal(policy.refusal('b.test', 'fd00::7'), undefined);
    assert.equal(policy.refusal('c.test', '172.20.3.4'), undefined);
    assert.notEqual(policy.refusal('c.test', '172.21.3.4'), undefined);
  });
});

describe('guarded connector', () => {
  function recordingConnect(): { calls: buildConnector.Options[]; connect: buildConnector.connector } {
    const calls: buildConnector.Options[] = [];
    return {
      calls,
      connect: (options, callback) => {
        calls.push(options);
        callback(new Error('fake connect: no socket in this test'), null);
      },
    };
  }

  function connectVia(
    connector: buildConnector.connector,
    options: Partial<buildConnector.Options> & { hostname: string },
  ): Promise<Error | null> {
    return new Promise((resolve) => {
      connector({ protocol: 'http:', port: '80', host: options.hostname, ...options }, (...args) =>
        resolve(args[0]),
      );
    });
  }

  const fixedLookup =
    (...addresses: string[]): HostLookup =>
    async () =>
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

  it('refuses a host name that resolves to a private address, without connecting', async () => {
    for (const address of ['10.0.0.5', '127.0.0.1', '169.254.169.254', '::1', '::ffff:10.0.0.5', 'fd00::5']) {
      const fake = recordingConnect();
      const connector = createGuardedConnector(createAddressPolicy({}), fixedLookup(address), fake.connect);
      const error = await connectVia(connector, { hostname: 'innocent.test' });
      assert.ok(error instanceof AppError && error.code === 'input_url_forbidden', address);
      assert.equal(fake.calls.length, 0, address);
    }
  });

  it('refuses a name whose answers mix public and private addresses', async () => {
    const fake = recordingConnect();
    const connector = createGuardedConnector(
      createAddressPolicy({}),
      fixedLookup('93.184.216.34', '10.0.0.5'),
      fake.connect,
    );
    const error = await connectVia(connector, { hostname: 'mixed.test' });
    assert.ok(error instanceof AppError && error.code === 'input_url_forbidden');
    assert.equal(fake.calls.length, 0);
  });

  it('refuses forbidden IP literals without looking them up', async () => {
    const fake = recordingConnect();
    let lookups = 0;
    const lookup: HostLookup = async () => {
      lookups++;
      return [{ address: '93.184.216.34', family: 4 }];
    };
    const connector = createGuardedConnector(createAddressPolicy({}), lookup, fake.connect);
    for (const hostname of [
      '10.0.0.5',
      '192.168.1.1',
      '172.16.0.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      'fe80::1',
      '::ffff:10.0.0.1',
    ]) {
      const error = await connectVia(connector, { hostname });
      assert.ok(error instanceof AppError && error.code === 'input_url_forbidden', hostname);
    }
    assert.equal(fake.calls.length, 0);
    assert.equal(lookups, 0);
  });

  it('connects to exactly the address it checked, keeping the host name for TLS', async () => {
    const fake = recordingConnect();
    let lookups = 0;
    // A rebinding resolver: public on the first answer, loopback afterwards.
    const rebinding: HostLookup = async () => [
      { address: lookups++ === 0 ? '93.184.216.34' : '127.0.0.1', family: 4 },
    ];
    const connector = createGuardedConnector(createAddressPolicy({}), rebinding, fake.connect);
    await connectVia(connector, {
      hostname: 'rebind.test',
      protocol: 'https:',
      port: '443',
      host: 'rebind.test',
    });
    assert.equal(lookups, 1);
    assert.equal(fake.calls.length, 1);
    assert.equal(fake.calls[0]?.hostname, '93.184.216.34');
    assert.equal(fake.calls[0]?.servername, 'rebind.test');

    const second = await connectVia(connector, { hostname: 'rebind.test' });
    assert.ok(second instanceof AppError && second.code === 'input_url_forbidden');
    assert.equal(fake.calls.length, 1);
  });

  it('reports a failed lookup as input_fetch_failed', async () => {
    const failing: HostLookup = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.test'), { code: 'ENOTFOUND' });
    };
    await assert.rejects(
      resolveAllowedAddress('nowhere.test', createAddressPolicy({}), failing),
      (error: unknown) => {
        return (
          error instanceof AppError && error.code === 'input_fetch_failed' && /ENOTFOUND/.test(error.message)
        );
      },
    );
    await assert.rejects(
      resolveAllowedAddress('empty.test', createAddressPolicy({}), fixedLookup()),
      (error: unknown) => {
        return error instanceof AppError && error.code === 'input_fetch_failed';
      },
    );
  });
});
