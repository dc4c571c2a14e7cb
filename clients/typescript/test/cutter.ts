/**
 * A TCP proxy in front of `leasegate serve` that the test can cut: `cut()` resets every open
 * connection (a dropped network), `freeze()` silences them without closing (a half-open
 * connection behind a NAT), `hold()` keeps new ones waiting until `release()`; what the
 * server sent down each connection is kept, to see what a resume put on the wire.
 */

import { createConnection, createServer, type Server, type Socket } from "node:net";

export class Cutter {
  private server: Server | undefined;
  private readonly open = new Set<Socket>();
  private readonly pairs: [client: Socket, upstream: Socket][] = [];
  private held: Socket[] | undefined;
  /** the bytes the server sent, one string per connection, in connection order */
  readonly downstream: string[] = [];
  url = "";

  constructor(private target: URL) {}

  /** New connections go to `url` from now on (open ones stay where they are). */
  retarget(url: string): void {
    this.target = new URL(url);
  }

  async start(): Promise<this> {
    this.server = createServer((client) => {
      if (this.held) this.held.push(client);
      else this.forward(client);
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", r));
    const address = this.server.address();
    if (!address || typeof address !== "object") throw new Error("proxy has no port");
    this.url = `http://127.0.0.1:${address.port}`;
    return this;
  }

  private forward(client: Socket): void {
    const index = this.downstream.push("") - 1;
    const upstream = createConnection(Number(this.target.port), this.target.hostname);
    this.open.add(client);
    this.open.add(upstream);
    this.pairs.push([client, upstream]);
    upstream.on("data", (chunk: Buffer) => { this.downstream[index] += chunk.toString(); });
    client.pipe(upstream);
    upstream.pipe(client);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      this.open.delete(client);
      this.open.delete(upstream);
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  }

  /** Reset every connection now open (both sides see the connection drop). */
  cut(): number {
    const n = this.open.size / 2;
    for (const socket of this.open) socket.resetAndDestroy();
    this.open.clear();
    return n;
  }

  /** Open connections stay open but carry nothing more from the server. */
  freeze(): void {
    for (const [client, upstream] of this.pairs) {
      upstream.unpipe(client);
      upstream.pause();
    }
  }

  /** New connections wait, unanswered, until release(). */
  hold(): void {
    this.held ??= [];
  }

  release(): void {
    const waiting = this.held ?? [];
    this.held = undefined;
    for (const client of waiting) {
      if (!client.destroyed) this.forward(client);
    }
  }

  /** How many connections are waiting in hold(). */
  get waiting(): number {
    return this.held?.filter((s) => !s.destroyed).length ?? 0;
  }

  async stop(): Promise<void> {
    this.release();
    this.cut();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
