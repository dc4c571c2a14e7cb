/**
 * The client against a real deployment: redis-server, a prefork celery worker drawing real
 * PNGs, and `leasegate serve`. The #86490 story, a parked run resumed over SSE across cut,
 * silent and moved connections, the example, and the refusals as typed errors.
 */

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, test } from "node:test";

import { runTick } from "../examples/openclaw-cron.js";
import { LeasegateClient, LeasegateError, type InboxEntry, type Run } from "../src/index.js";
import { Cutter } from "./cutter.js";
import { Stack, TOKENS, waitFor } from "./harness.js";

const stack = new Stack();
let client: LeasegateClient;
const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

before(async () => {
  // images take 2 s and owner checks are rare: a dead run's image is really drawn and
  // finishes late, so the gate (not the worker) is what keeps it out of the next run
  await stack.start({ generatorLatency: 2, checkInterval: 30 });
  client = new LeasegateClient({ baseUrl: stack.url, token: TOKENS.runtime });
});

after(async () => {
  await stack.stop();
});

function key(prefix: string): string {
  return `${prefix}${randomBytes(4).toString("hex")}`;
}

async function refusal(call: Promise<unknown>): Promise<LeasegateError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof LeasegateError, `not a LeasegateError: ${String(error)}`);
    return error;
  }
  assert.fail("the call was not refused");
}

/** Poll the run's status until no callback is pending: each has its verdict. */
async function settled(run: Run): Promise<void> {
  await waitFor(async () => Object.keys((await run.status()).pending).length === 0,
                `verdicts for run ${run.runId}`, 60_000, () => stack.logs());
}

test("#86490 from TypeScript: five isolated cron runs, no dead run's late image becomes " +
     "the next run's entry 2", async () => {
  const sessionKey = key("cron:job-");
  const ticks: { run: Run; callbackId: string; prompt: string }[] = [];
  for (let tick = 1; tick <= 5; tick++) {
    const prompt = `tick ${tick}: draw today's header`;
    const run = await client.startRun({ sessionKey, prompt, ttl: 60 });
    assert.equal(run.fence, tick, "every tick is a fresh run with the next fence");
    const callbackId = await run.submit("image_generate",
                                        { prompt: `header ${tick}`, size: "256x256", seed: tick });
    ticks.push({ run, callbackId, prompt });
    if (tick === 5) break;
    // the image is being drawn (the worker's owner check passed); now this tick dies
    await stack.workerLog(`working on leasegate.image_generate callback ${callbackId}`);
    if (tick % 2 === 1) {
      // ticks 1 and 3 crash after a last short heartbeat: their leases expire
      await run.renew({ ttl: 0.3 });
      await waitFor(async () => (await run.status()).state === "expired",
                    `run ${tick} to expire`);
    } // ticks 2 and 4 are superseded by the next tick's startRun
  }
  const last = ticks[4]!;
  await last.run.park(120);
  const seen: InboxEntry[] = [];
  for await (const entry of last.run.results()) {
    seen.push(entry);
    if (entry.callback_id === last.callbackId) break;
  }
  assert.deepEqual(seen.map((e) => [e.seq, e.role, e.kind, e.callback_id]),
                   [[1, "user", "prompt", null], [2, "tool", "result", last.callbackId]]);
  assert.equal(seen[0]!.payload, last.prompt);

  // every dead run's callback gets its verdict: the dead letters, once, never an inbox
  for (const { run } of ticks.slice(0, 4)) await settled(run);
  const letters = await stack.deadLetters(sessionKey);
  for (const [i, { run, callbackId }] of ticks.slice(0, 4).entries()) {
    const mine = letters.filter((l) => l.callback_id === callbackId);
    assert.equal(mine.length, 1, `tick ${i + 1}'s callback is one dead letter`);
    assert.equal(mine[0]!.run_id, run.runId);
    assert.equal(mine[0]!.reason, i % 2 === 0 ? "lease_expired" : "superseded");
    const entries = await run.inbox();
    assert.deepEqual(entries.map((e) => [e.seq, e.payload]), [[1, ticks[i]!.prompt]],
                     `tick ${i + 1}'s inbox holds only its prompt`);
  }
  // each dead run's image was really drawn and reached the gate late, image attached
  assert.equal(letters.filter((l) => l.artifacts.length > 0).length, 4);
  const final = await last.run.inbox();
  assert.deepEqual(final.map((e) => e.callback_id), [null, last.callbackId],
                   "no late image landed in the live run after its own");
  assert.equal(letters.filter((l) => l.callback_id === last.callbackId).length, 0);

  // its image is a real PNG, fetched with the runtime's own token
  const artifact = seen[1]!.artifacts[0]!;
  const bytes = await client.fetchArtifact(artifact);
  assert.deepEqual([...bytes.subarray(0, 8)], PNG);
  assert.equal(bytes.length, artifact.size);
  assert.equal(createHash("sha256").update(bytes).digest("hex"), artifact.digest);
  assert.deepEqual(await client.fetchArtifact(artifact.digest, { run: last.run }), bytes);
  const head = await client.openArtifact(artifact, { range: [0, 7] });
  assert.equal(head.status, 206);
  assert.deepEqual([...new Uint8Array(await head.arrayBuffer())], PNG);
  const other = new LeasegateClient({ baseUrl: stack.url, token: TOKENS.other });
  const hidden = await refusal(other.fetchArtifact(artifact));
  assert.equal(hidden.status, 403);
  const released = await last.run.release("completed");
  assert.equal(released.state, "released");
});

test("a parked run resumes exactly once over SSE, across cut connections", async (t) => {
  const cutter = await new Cutter(new URL(stack.url)).start();
  try {
    const run = await client.startRun({ sessionKey: key("agent:park-"), prompt: "draw a fox",
                                        ttl: 30 });
    // the stream goes through a proxy the test can cut; every other call goes direct
    const viaProxy = new LeasegateClient({ baseUrl: cutter.url, token: TOKENS.runtime });
    const remote = await viaProxy.attach(run.ref);
    const stream = remote.results({ reconnectDelayMs: 100 });
    const yielded: InboxEntry[] = [];
    // the runtime's side: it just reads the stream (a generator runs only while read)
    const reading = (async () => {
      for await (const entry of stream) yielded.push(entry);
    })();
    await waitFor(() => yielded.length === 1, "entry 1 over SSE");
    // the runtime's connection drops; while it is away the run asks, parks, and its image
    // arrives
    cutter.hold();
    assert.ok(cutter.cut() >= 1);
    const callbackId = await run.submit("image_generate", { prompt: "a fox", size: "256x256" });
    await run.park(60);
    await waitFor(async () => (await run.inbox({ after: 1 })).length === 1,
                  "the image in the inbox", 60_000, () => stack.logs());
    await waitFor(() => cutter.waiting >= 1, "the stream's reconnect");
    cutter.release();
    await waitFor(() => yielded.length === 2, "entry 2 over the resumed stream");
    // a second cut after the image: the resumed stream must not repeat it
    const connections = cutter.downstream.length;
    assert.ok(cutter.cut() >= 1);
    await waitFor(() => cutter.downstream.length > connections, "the second reconnect");
    await run.release("completed");
    await reading;
    assert.deepEqual(yielded.map((e) => [e.seq, e.callback_id]),
                     [[1, null], [2, callbackId]]);
    assert.equal(yielded[1]!.kind, "result");
    assert.equal(stream.state?.state, "released");
    assert.ok(stream.ended);
    assert.ok(stream.reconnects >= 2, `reconnects: ${stream.reconnects}`);
    // on the wire, too: each entry crossed once (Last-Event-ID resumed, nothing replayed)
    const ids = cutter.downstream.join("").split(/\r?\n\r?\n/)
      .filter((block) => /^event: ?entry$/m.test(block))
      .map((block) => Number(/^id: ?(\d+)$/m.exec(block)?.[1]));
    assert.deepEqual(ids, [1, 2]);
    t.diagnostic(`connections: ${cutter.downstream.length}, reconnects: ${stream.reconnects}, ` +
                 `states: ${stream.states.map((s) => s.state).join(" ")}`);
  } finally {
    await cutter.stop();
  }
});

test("results() ends with the state event when the run is superseded", async () => {
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

test("examples/openclaw-cron.ts: two ticks of one job, each gets only its own image",
     async () => {
  const job = { id: key("example-"), prompt: "Draw today's header", ttl: 60 };
  const one = await runTick(client, job);
  const two = await runTick(client, job);
  assert.deepEqual([one.fence, two.fence], [1, 2]);
  for (const tick of [one, two]) {
    assert.equal(tick.state, "released");
    assert.ok(tick.image);
    assert.deepEqual([...tick.image.subarray(0, 8)], PNG);
  }
});

test("a stream outlives its serve process: it resumes on another one, nothing lost or twice",
     async (t) => {
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
