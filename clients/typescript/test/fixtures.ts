/** What the end-to-end test files share: one real deployment per file, a client for it, and
 * small helpers. */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before } from "node:test";

import { LeasegateClient, LeasegateError, type Run } from "../src/index.js";
import { Stack, TOKENS, waitFor } from "./harness.js";

export const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** A deployment started before this file's tests and stopped after them. */
export function useStack(): { stack: Stack; client: () => LeasegateClient } {
  const stack = new Stack();
  let client: LeasegateClient | undefined;
  before(async () => {
    // images take 2 s and owner checks are rare: a dead run's image is really drawn and
    // finishes late, so the gate (not the worker) is what keeps it out of the next run
    await stack.start({ generatorLatency: 2, checkInterval: 30 });
    client = new LeasegateClient({ baseUrl: stack.url, token: TOKENS.runtime });
  });
  after(async () => {
    await stack.stop();
  });
  return {
    stack,
    client: () => {
      if (!client) throw new Error("the stack is not started");
      return client;
    },
  };
}

export function key(prefix: string): string {
  return `${prefix}${randomBytes(4).toString("hex")}`;
}

export async function refusal(call: Promise<unknown>): Promise<LeasegateError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof LeasegateError, `not a LeasegateError: ${String(error)}`);
    return error;
  }
  assert.fail("the call was not refused");
}

/** Poll the run's status until no callback is pending: each has its verdict. */
export async function settled(stack: Stack, run: Run): Promise<void> {
  await waitFor(async () => Object.keys((await run.status()).pending).length === 0,
                `verdicts for run ${run.runId}`, 60_000, () => stack.logs());
}
