/**
 * The wire shapes of the runtime API. Provisional hand-written forms until the server's
 * OpenAPI is generated into schema.d.ts; then these become aliases of the generated ones.
 */

export type RunState = "live" | "parked" | "expired" | "superseded" | "released" | "unknown";
export type Policy = "supersede" | "reject";
export type Outcome = "completed" | "failed" | "cancelled";

export interface StartRunBody { session_key: string; prompt: unknown; ttl: number; policy?: Policy }
export interface RunCreated { run: string; run_id: string; fence: number; session_key: string;
                              state: RunState }
export interface RunStatus { run: string; run_id: string; fence: number; session_key: string;
                             state: RunState; [key: string]: unknown }
export interface SubmitBody { tool: string; args: Record<string, unknown>; deadline?: number;
                              callback_id?: string }
export interface TaskAccepted { callback_id: string }
export interface ArtifactRef { digest: string; size: number; media_type: string; url: string }
export interface InboxEntry { seq: number; role: string; kind: string; callback_id: string | null;
                              payload: unknown; artifacts: ArtifactRef[] }
export interface InboxPage { entries: InboxEntry[] }
export interface StateEvent { state: RunState; reason?: string; [key: string]: unknown }
