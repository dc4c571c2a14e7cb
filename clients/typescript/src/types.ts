/**
 * The wire shapes of the runtime API, named: aliases of schema.d.ts, which is generated from
 * the gateway's /openapi.json (`npm run generate`), so these cannot drift from the server.
 */

import type { components } from "./schema.js";

type Schemas = components["schemas"];

export type StartRunBody = Schemas["StartRun"];
export type RunStarted = Schemas["RunStarted"];
export type RunStatus = Schemas["RunStatus"];
export type RunLease = Schemas["RunLease"];
export type RunReleased = Schemas["RunReleased"];
export type SubmitBody = Schemas["SubmitTask"];
export type TaskAccepted = Schemas["TaskAccepted"];
export type ParkBody = Schemas["ParkRun"];
export type RenewBody = Schemas["RenewRun"];
export type ReleaseBody = Schemas["ReleaseRun"];
export type InboxEntry = Schemas["InboxEntry"];
export type InboxPage = Schemas["InboxPage"];
export type ArtifactLink = Schemas["ArtifactLink"];
export type ErrorBody = Schemas["Error"];

export type RunState = RunStatus["state"];
export type Policy = NonNullable<StartRunBody["policy"]>;
export type Outcome = NonNullable<ReleaseBody["outcome"]>;

/** The data of a `state` event on the results stream: the run's status when its state
 * changed (parked, live again) or it ended (superseded, expired, released). */
export type StateEvent = RunStatus;
