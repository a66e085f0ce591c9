import net from 'node:net';

export type CutMode = 'reset' | 'blackhole';

/**
 * A TCP proxy between darkroom's workers and PostgreSQL that the chaos run can cut:
 * - `reset`: every open connection is destroyed and new ones are refused (closed at once);
 * - `blackhole`: connections stay open but nothing passes either way, as in a partition with
 *   no RST (a half-open TCP connection); new connections hang the same way.
 * `heal()` ends the cut; connections blackholed during it are destroyed then (their peers
 * would have timed out), new ones pass again.
 */
export class CuttableProxy {
  private server: net.Server;
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  private mode: CutMode | undefined;
  port = 0;

  private readonly targetHost: string;
  private readonly targetPort: number;

  constructor(targetHost: string, targetPort: number) {
    this.targetHost = targetHost;
    this.targetPort = targetPort;
    this.server = net.createServer((client) => this.accept(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  get connections(): number {
    return this.pairs.size;
  }

  cut(mode: CutMode): void {
    this.mode = mode;
    if (mode === 'reset') for (const pair of this.pairs) this.drop(pair);
    else for (const { client, upstream } of this.pairs) pauseBoth(client, upstream);
  }

  heal(): void {
    const was = this.mode;
    this.mode = undefined;
    if (was === 'blackhole') for (const pair of [...this.pairs]) this.drop(pair);
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) this.drop(pair);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => {});
    if (this.mode === 'reset') {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.targetPort, this.targetHost);
    upstream.on('error', () => {});
    const pair = { client, upstream };
    this.pairs.add(pair);
    const end = () => this.drop(pair);
    client.on('close', end);
    upstream.on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
    if (this.mode === 'blackhole') pauseBoth(client, upstream);
  }

  private drop(pair: { client: net.Socket; upstream: net.Socket }): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream.destroy();
  }
}

function pauseBoth(a: net.Socket, b: net.Socket): void {
  a.unpipe(b);
  b.unpipe(a);
  a.pause();
  b.pause();
}
