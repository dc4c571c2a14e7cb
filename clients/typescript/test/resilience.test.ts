/**
 * Streams that end, move, go silent or are aborted, and refusals as typed errors, against a
 * real deployment (redis-server, a prefork celery worker, `leasegate serve`).
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { LeasegateClient, type InboxEntry } from "../src/index.js";
import { Cutter } from "./cutter.js";
import { key, refusal, useStack } from "./fixtures.js";
import { TOKENS, waitFor } from "./harness.js";

const { stack, client: connect } = useStack();

test("results() ends with the state event when the run is superseded", async () => {
  const client = connect();
  const sessionKey = key("agent:superseded-");
  const run = await client.startRun({ sessionKey, prompt: "first", ttl: 30 });
  const stream = run.results();
  const seen: string[] = [];
  for await (const event of stream.events()) {
    if (event.type === "entry") {
      seen.push(`entry ${event.entry.seq}`);
      await client.startRun({ sessionKey, prompt: "second", ttl: 30 });
    } else {
      seen.push(`state ${event.state.state}`);
    }
  }
  assert.deepEqual(seen, ["entry 1", "state superseded"]);
  assert.ok(stream.ended);
  assert.equal(run.state, "superseded");
});

test("refusals are LeasegateErrors with status, code, field and reason", async () => {
  const client = connect();
  const sessionKey = key("cron:refusals-");
  const forbidden = await refusal(client.startRun({ sessionKey: key("other:"), prompt: "x",
                                                    ttl: 10 }));
  assert.equal(forbidden.status, 403);
  const badTtl = await refusal(client.startRun({ sessionKey, prompt: "x", ttl: 0 }));
  assert.deepEqual([badTtl.status, badTtl.field], [422, "ttl"]);
  const stranger = new LeasegateClient({ baseUrl: stack.url, token: "not-a-token" });
  assert.equal((await refusal(stranger.startRun({ sessionKey, prompt: "x", ttl: 10 }))).status,
               401);

  const first = await client.startRun({ sessionKey, prompt: "first", ttl: 30 });
  const held = await refusal(client.startRun({ sessionKey, prompt: "x", ttl: 10,
                                               policy: "exclusive" }));
  assert.deepEqual([held.status, held.code, held.field], [409, "lease_held", "session_key"]);
  const unknown = await refusal(first.submit("video_generate", {}));
  assert.deepEqual([unknown.status, unknown.code, unknown.field], [422, "unknown_tool", "tool"]);
  assert.match(unknown.message, /image_generate/);
  const second = await client.startRun({ sessionKey, prompt: "second", ttl: 30 });
  const lost = await refusal(first.submit("image_generate", { prompt: "late", size: "256x256" }));
  assert.deepEqual([lost.status, lost.code, lost.reason, lost.leaseLost],
                   [409, "lease_lost", "superseded", true]);
  const lostRenew = await refusal(first.renew());
  assert.equal(lostRenew.reason, "superseded");
  // the other token may not even look at this run
  const other = new LeasegateClient({ baseUrl: stack.url, token: TOKENS.other });
  const peek = await refusal(other.attach(second.ref));
  assert.equal(peek.status, 403);
  await second.release("cancelled");
  assert.equal((await second.status()).state, "released");
});

test("a stream outlives its serve process: it resumes on another one, nothing lost or twice",
     async (t) => {
  const client = connect();
  const spare = await stack.startServe();
  const cutter = await new Cutter(new URL(spare)).start();
  try {
    const run = await client.startRun({ sessionKey: key("agent:failover-"), prompt: "draw a cat",
                                        ttl: 30 });
    const viaProxy = new LeasegateClient({ baseUrl: cutter.url, token: TOKENS.runtime });
    const stream = (await viaProxy.attach(run.ref)).results({ reconnectDelayMs: 100 });
    const yielded: InboxEntry[] = [];
    const reading = (async () => {
      for await (const entry of stream) yielded.push(entry);
    })();
    await waitFor(() => yielded.length === 1, "entry 1 from the spare serve");
    const callbackId = await run.submit("image_generate", { prompt: "a cat", size: "256x256" });
    await run.park(60);
    // the spare serve process goes away mid-stream; the address now leads to the first one
    cutter.retarget(stack.url);
    const graceful = await stack.stopServe(spare, 3_000);
    t.diagnostic(`the spare serve stopped on SIGTERM alone: ${graceful}`);
    cutter.cut();
    await waitFor(() => yielded.length === 2, "entry 2 from the other serve", 60_000,
                  () => stack.logs());
    await run.release("completed");
    await reading;
    assert.deepEqual(yielded.map((e) => [e.seq, e.callback_id]), [[1, null], [2, callbackId]]);
    assert.equal(stream.state?.state, "released");
    assert.ok(stream.reconnects >= 1);
  } finally {
    await cutter.stop();
  }
});

test("a silent connection is noticed (idle timeout) and the stream resumes on a new one",
     async () => {
  const client = connect();
  const cutter = await new Cutter(new URL(stack.url)).start();
  try {
    const run = await client.startRun({ sessionKey: key("agent:silent-"), prompt: "draw an owl",
                                        ttl: 30 });
    const viaProxy = new LeasegateClient({ baseUrl: cutter.url, token: TOKENS.runtime });
    const stream = (await viaProxy.attach(run.ref))
      .results({ reconnectDelayMs: 100, idleTimeoutMs: 1_500 });
    const yielded: InboxEntry[] = [];
    const reading = (async () => {
      for await (const entry of stream) yielded.push(entry);
    })();
    await waitFor(() => yielded.length === 1, "entry 1");
    cutter.freeze(); // the connection stays up and says nothing, not even heartbeats
    const callbackId = await run.submit("image_generate", { prompt: "an owl", size: "256x256" });
    await waitFor(() => yielded.length === 2, "entry 2 on a fresh connection", 60_000,
                  () => stack.logs());
    await run.release("completed");
    await reading;
    assert.deepEqual(yielded.map((e) => [e.seq, e.callback_id]), [[1, null], [2, callbackId]]);
    assert.ok(stream.reconnects >= 1);
  } finally {
    await cutter.stop();
  }
});

test("aborting results() ends the iteration with the signal's reason", async () => {
  const client = connect();
  const run = await client.startRun({ sessionKey: key("agent:abort-"), prompt: "x", ttl: 30 });
  const controller = new AbortController();
  const seen: number[] = [];
  await assert.rejects(async () => {
    for await (const entry of run.results({ signal: controller.signal })) {
      seen.push(entry.seq);
      controller.abort(new Error("the runtime shuts down"));
    }
  }, /the runtime shuts down/);
  assert.deepEqual(seen, [1]);
  await run.release("cancelled");
});
