/** One run of a session key, as its runtime sees it: lease calls, tasks, the inbox. */

import type { LeasegateClient } from "./client.js";
import { ResultStream, type ResultsOptions } from "./results.js";
import type {
  InboxEntry, InboxPage, Outcome, ParkBody, ReleaseBody, RenewBody, RunLease, RunReleased,
  RunStarted, RunState, RunStatus, SubmitBody, TaskAccepted,
} from "./types.js";

/** What a Run knows of itself: the start answer, or a status reading. */
export type RunIdentity = Pick<RunStarted, "run" | "run_id" | "fence" | "session_key" | "state">;

export interface SubmitOptions {
  /** seconds from now after which the result is no longer wanted (a dead letter instead) */
  deadline?: number;
  /** your own id for this call (an LLM tool-call id, say), unique within the run */
  callbackId?: string;
  signal?: AbortSignal;
}

export interface ReleaseOptions {
  /** also revoke the tasks still pending, so queued ones never start */
  cancelPending?: boolean;
  signal?: AbortSignal;
}

export interface InboxOptions {
  /** entries with seq > after (default 0: from the prompt on) */
  after?: number;
  limit?: number;
  signal?: AbortSignal;
}

interface Signalled { signal?: AbortSignal | undefined }

export class Run {
  /** the opaque ref every route takes */
  readonly ref: string;
  runId: string;
  fence: number;
  sessionKey: string;
  /** the state the gateway last reported for this run */
  state: RunState;

  constructor(private readonly client: LeasegateClient, created: RunIdentity) {
    this.ref = created.run;
    this.runId = created.run_id;
    this.fence = created.fence;
    this.sessionKey = created.session_key;
    this.state = created.state;
  }

  private path(tail = ""): string {
    return `/v1/runs/${encodeURIComponent(this.ref)}${tail}`;
  }

  private note<T extends Partial<RunIdentity> & { state: RunState }>(status: T): T {
    this.runId = status.run_id || this.runId;
    this.fence = status.fence || this.fence;
    this.sessionKey = status.session_key || this.sessionKey;
    this.state = status.state;
    return status;
  }

  /** Send `tool` as a background task owned by this run; its callback id. 409 once the
   * lease is lost, 422 for an unknown tool (the message lists the known ones). */
  async submit(tool: string, args: Record<string, unknown> = {},
               options: SubmitOptions = {}): Promise<string> {
    const body: SubmitBody = { tool, args };
    if (options.deadline !== undefined) body.deadline = options.deadline;
    if (options.callbackId !== undefined) body.callback_id = options.callbackId;
    const accepted = await this.client.request<TaskAccepted>(
      "POST", this.path("/tasks"), { body, signal: options.signal });
    return accepted.callback_id;
  }

  /** Wait for callbacks without heartbeats for up to `until` seconds; a delivery resumes
   * the run (hold `results()` to hear it). */
  async park(until: number, options: Signalled = {}): Promise<RunLease> {
    const body: ParkBody = { until };
    return this.note(await this.client.request<RunLease>(
      "POST", this.path("/park"), { body, signal: options.signal }));
  }

  /** Extend the lease by `ttl` seconds (default: its own ttl); a parked run is live again. */
  async renew(options: Signalled & { ttl?: number } = {}): Promise<RunLease> {
    const body: RenewBody = options.ttl === undefined ? {} : { ttl: options.ttl };
    return this.note(await this.client.request<RunLease>(
      "POST", this.path("/renew"), { body, signal: options.signal }));
  }

  /** End the run; results still pending will go to the dead letters. */
  async release(outcome: Outcome = "completed", options: ReleaseOptions = {}):
      Promise<RunReleased> {
    const body: ReleaseBody = { outcome };
    if (options.cancelPending !== undefined) body.cancel_pending = options.cancelPending;
    return this.note(await this.client.request<RunReleased>(
      "POST", this.path("/release"), { body, signal: options.signal }));
  }

  /** State, fence, deadlines and pending callbacks, as the registry has them now. */
  async status(options: Signalled = {}): Promise<RunStatus> {
    return this.note(await this.client.request<RunStatus>(
      "GET", this.path(), { signal: options.signal }));
  }

  /** One page of inbox entries with seq > `after`, in order. */
  async inbox(options: InboxOptions = {}): Promise<InboxEntry[]> {
    const page = await this.client.request<InboxPage>(
      "GET", this.path("/inbox"),
      { query: { after: options.after, limit: options.limit }, signal: options.signal });
    return page.entries;
  }

  /** The inbox as it grows, pushed over SSE: every entry once, in seq order, across
   * reconnects; ends when the run ends (superseded, expired, released). */
  results(options: ResultsOptions = {}): ResultStream {
    return new ResultStream(this.client, this.path("/events"), options,
                            (state) => { this.state = state; });
  }
}
