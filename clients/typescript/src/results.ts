/** A run's inbox pushed over SSE, reconnecting with Last-Event-ID: no loss, no duplicates. */

import type { LeasegateClient } from "./client.js";
import { LeasegateError } from "./errors.js";
import { readEvents } from "./sse.js";
import type { InboxEntry, RunState, StateEvent } from "./types.js";

export interface ResultsOptions {
  /** start after this seq (default 0: entry 1, the prompt, comes first) */
  after?: number;
  /** the caller's abort: the iteration then throws the signal's reason */
  signal?: AbortSignal;
  /** every `state` event, as it arrives */
  onState?: (event: StateEvent) => void;
  /** wait before the first reconnect (doubling up to 10 s; the server's `retry:` wins) */
  reconnectDelayMs?: number;
  /** give up after this many failed reconnects in a row (default 20) */
  maxReconnects?: number;
  /** reconnect when nothing, not even a heartbeat, arrived for this long (default 45 s) */
  idleTimeoutMs?: number;
}

export type RunEvent =
  | { type: "entry"; entry: InboxEntry }
  | { type: "state"; state: StateEvent };

/** States after which the run never gets another entry. */
export const ENDED: ReadonlySet<RunState> =
  new Set<RunState>(["expired", "superseded", "released", "unknown"]);

const MAX_DELAY_MS = 10_000;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason); };
    const timer = setTimeout(() => { signal?.removeEventListener("abort", onAbort); resolve(); },
                             ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export class ResultStream implements AsyncIterable<InboxEntry> {
  /** the seq of the last entry yielded: a later stream resumes after it */
  lastSeq: number;
  /** every state event so far, in order */
  readonly states: StateEvent[] = [];
  /** how many times the stream was opened again after a cut */
  reconnects = 0;
  /** true once the run ended and the stream closed for good */
  ended = false;
  private started = false;
  private received = 0; // events and heartbeats, over all connections

  constructor(private readonly client: LeasegateClient, private readonly path: string,
              private readonly options: ResultsOptions,
              private readonly onRunState: (state: RunState) => void) {
    this.lastSeq = options.after ?? 0;
  }

  /** the last state event, if any */
  get state(): StateEvent | undefined {
    return this.states[this.states.length - 1];
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<InboxEntry> {
    for await (const event of this.events()) {
      if (event.type === "entry") yield event.entry;
    }
  }

  /** Entries and state events, interleaved as the server sent them. */
  async *events(): AsyncGenerator<RunEvent> {
    if (this.started) throw new Error("a ResultStream is read once; call run.results() again");
    this.started = true;
    const { signal } = this.options;
    const base = this.options.reconnectDelayMs ?? 500;
    const idleMs = this.options.idleTimeoutMs ?? 45_000;
    const maxFailures = this.options.maxReconnects ?? 20;
    let serverDelay: number | undefined;
    let delay = base;
    let failures = 0;
    let first = true;
    while (!this.ended) {
      if (!first) {
        this.reconnects += 1;
        await sleep(delay, signal);
      }
      first = false;
      const idle = new AbortController();
      const openTimer = setTimeout(() => idle.abort(), idleMs);
      let response: Response;
      try {
        response = await this.open(signal ? AbortSignal.any([signal, idle.signal])
          : idle.signal);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        // 401, 403, 404 will not change by asking again; an unreachable or silent gateway may
        const transient = idle.signal.aborted ||
          (error instanceof LeasegateError && error.transient);
        if (!transient) throw error;
        failures += 1;
        if (failures > maxFailures) throw error;
        delay = Math.min((serverDelay ?? delay) * 2, MAX_DELAY_MS);
        continue;
      } finally {
        clearTimeout(openTimer);
      }
      const before = this.received;
      let failure: unknown;
      try {
        yield* this.read(response, idle, idleMs, (ms) => { serverDelay = delay = ms; });
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (error instanceof SyntaxError) throw error; // the server sent bad JSON: a bug
        failure = error; // a cut connection (reset, restart, idle timeout): resume
      }
      if (this.received > before) {
        failures = 0;
        delay = serverDelay ?? base;
      } else if (!this.ended) {
        // opened and closed with nothing said (the gateway lost Redis, say): back off
        failures += 1;
        if (failures > maxFailures) throw failure ?? new Error("the event stream keeps closing");
        delay = Math.min(delay * 2, MAX_DELAY_MS);
      }
    }
  }

  private open(signal: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { accept: "text/event-stream",
                                              "cache-control": "no-cache" };
    if (this.lastSeq > 0) headers["last-event-id"] = String(this.lastSeq);
    return this.client.send("GET", this.path, { headers, signal, streaming: true });
  }

  private async *read(response: Response, idle: AbortController, idleMs: number,
                      onRetry: (ms: number) => void): AsyncGenerator<RunEvent> {
    if (!response.body) return;
    let timer = setTimeout(() => idle.abort(), idleMs);
    const touch = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), idleMs);
    };
    const heartbeat = (): void => {
      this.received += 1;
      touch();
    };
    try {
      for await (const event of readEvents(response.body, { onComment: heartbeat, onRetry })) {
        touch();
        if (event.event === "entry") {
          this.received += 1;
          const entry = JSON.parse(event.data) as InboxEntry;
          const seq = typeof entry.seq === "number" ? entry.seq : Number(event.id);
          if (seq <= this.lastSeq) continue; // already yielded before a reconnect
          this.lastSeq = seq;
          clearTimeout(timer); // a slow consumer is not a silent server
          yield { type: "entry", entry };
          touch();
        } else if (event.event === "state") {
          this.received += 1;
          clearTimeout(timer);
          yield* this.stateEvent(JSON.parse(event.data) as StateEvent);
          if (this.ended) return;
          touch();
        } // `error` (the gateway lost Redis; it closes the stream next) is no progress
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private *stateEvent(state: StateEvent): Generator<RunEvent> {
    this.states.push(state);
    this.onRunState(state.state);
    this.options.onState?.(state);
    if (ENDED.has(state.state)) this.ended = true;
    yield { type: "state", state };
  }
}
