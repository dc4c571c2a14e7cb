/** @leasegate/client: runs that own their results, from TypeScript. */

export { LeasegateClient } from "./client.js";
export type {
  ArtifactOptions, LeasegateClientOptions, RequestOptions, StartRunOptions,
} from "./client.js";
export { LeasegateError } from "./errors.js";
export type { LeaseLostReason } from "./errors.js";
export { ENDED, ResultStream } from "./results.js";
export type { ResultsOptions, RunEvent } from "./results.js";
export { Run } from "./run.js";
export type { InboxOptions, ReleaseOptions, SubmitOptions } from "./run.js";
export { readEvents, SseParser } from "./sse.js";
export type { SseEvent, SseHooks } from "./sse.js";
export type * from "./types.js";
