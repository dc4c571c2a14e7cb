/** The connection to one leasegate gateway: a base URL and a runtime token. */

import { errorFromResponse, networkError } from "./errors.js";
import { Run } from "./run.js";
import type { ArtifactLink, Policy, RunStarted, StartRunBody } from "./types.js";

export interface LeasegateClientOptions {
  /** where `leasegate serve` answers, e.g. "http://127.0.0.1:8080" */
  baseUrl: string;
  /** a bearer token of role `runtime`; it may only touch its session-key prefixes */
  token: string;
  /** a fetch of your own (a proxy agent, instrumentation); the global fetch otherwise */
  fetch?: typeof fetch;
  /** give up on a JSON call after this many milliseconds (default 30 000) */
  timeoutMs?: number;
}

export interface StartRunOptions {
  /** e.g. "cron:daily-header"; must be under one of the token's prefixes */
  sessionKey: string;
  /** inbox entry 1 of the run, written atomically with its lease */
  prompt: unknown;
  /** the lease in seconds; renew before it runs out or park */
  ttl: number;
  /** "supersede" (default): a new run fences off the old one; "exclusive": 409 lease_held
   * while a live run holds the key */
  policy?: Policy;
  signal?: AbortSignal;
}

export interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** no timeout (a stream held open) */
  streaming?: boolean;
}

export interface ArtifactOptions {
  /** with a bare digest: the run (or its ref) whose inbox references the artifact */
  run?: string | { ref: string };
  signal?: AbortSignal;
}

const DIGEST = /^[0-9a-f]{64}$/;

export class LeasegateClient {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly fetchImpl: typeof fetch;
  private readonly timeoutMs: number;

  constructor(options: LeasegateClientOptions) {
    if (!options.baseUrl) throw new TypeError("baseUrl is required");
    if (!options.token) throw new TypeError("token is required");
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Acquire a lease on `sessionKey` and write `prompt` as entry 1 of the new run's inbox. */
  async startRun(options: StartRunOptions): Promise<Run> {
    const body: StartRunBody = { session_key: options.sessionKey, prompt: options.prompt,
                                 ttl: options.ttl };
    if (options.policy !== undefined) body.policy = options.policy;
    const created = await this.request<RunStarted>("POST", "/v1/runs",
                                                  { body, signal: options.signal });
    return new Run(this, created);
  }

  /** A run another process started, by its ref (the `run` of its creation). */
  async attach(ref: string, signal?: AbortSignal): Promise<Run> {
    const run = new Run(this, { run: ref, run_id: "", fence: 0, session_key: "",
                                state: "unknown" });
    await run.status({ signal });
    return run;
  }

  /** The bytes of an artifact: an entry's ArtifactLink, its `url`, or a digest with the
   * run whose inbox references it (a runtime token may only see its own runs' artifacts). */
  async fetchArtifact(artifact: string | ArtifactLink, options: ArtifactOptions = {}):
      Promise<Uint8Array> {
    const response = await this.openArtifact(artifact, options);
    return new Uint8Array(await response.arrayBuffer());
  }

  /** The artifact as a streaming Response (body, content-type, content-length); `range`
   * asks for bytes [start, end] only (206). */
  async openArtifact(artifact: string | ArtifactLink,
                     options: ArtifactOptions & { range?: [number, number?] } = {}):
      Promise<Response> {
    const headers: Record<string, string> = {};
    if (options.range) {
      const [start, end] = options.range;
      headers["range"] = `bytes=${start}-${end ?? ""}`;
    }
    return this.send("GET", this.artifactPath(artifact, options.run),
                     { headers, signal: options.signal, streaming: true });
  }

  private artifactPath(artifact: string | ArtifactLink, run?: string | { ref: string }): string {
    const ref = typeof artifact === "string" ? artifact : artifact.url || artifact.digest;
    if (DIGEST.test(ref)) {
      const owner = typeof run === "string" ? run : run?.ref;
      return `/v1/artifacts/${ref}${owner ? `?run=${encodeURIComponent(owner)}` : ""}`;
    }
    const url = new URL(ref, this.baseUrl + "/");
    if (url.origin !== new URL(this.baseUrl).origin) {
      // the bearer token only ever goes to the gateway it belongs to
      throw new TypeError(`artifact URL ${ref} is not on ${this.baseUrl}`);
    }
    return url.pathname + url.search;
  }

  /** A JSON call: the parsed body of a 2xx answer, a LeasegateError otherwise. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.send(method, path, options);
    if (response.status === 204) return undefined as T;
    return await response.json() as T;
  }

  /** A call whose 2xx Response is returned unread; any other status throws. */
  async send(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`,
                                               ...options.headers };
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const signals = [options.signal, options.streaming ? undefined
      : AbortSignal.timeout(this.timeoutMs)].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    let response: Response;
    try {
      response = await this.fetchImpl(url, { method, headers, body, signal: signal ?? null });
    } catch (cause) {
      if (options.signal?.aborted) throw cause; // the caller's own abort stays an AbortError
      throw networkError(cause, `${method} ${path}`);
    }
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }
}
