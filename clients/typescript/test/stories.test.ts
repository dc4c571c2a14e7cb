/**
 * The stories against a real deployment (redis-server, a prefork celery worker drawing real
 * PNGs, `leasegate serve`): #86490 from TypeScript, a parked run resumed once over SSE across
 * cut connections, and the example.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import { runTick } from "../examples/openclaw-cron.js";
import { LeasegateClient, type InboxEntry, type Run } from "../src/index.js";
import { Cutter } from "./cutter.js";
import { key, PNG, refusal, settled, useStack } from "./fixtures.js";
import { TOKENS, waitFor } from "./harness.js";

const { stack, client: connect } = useStack();

test("#86490 from TypeScript: five isolated cron runs, no dead run's late image becomes " +
     "the next run's entry 2", async () => {
  const client = connect();
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
  for (const { run } of ticks.slice(0, 4)) await settled(stack, run);
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
  const client = connect();
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

test("examples/openclaw-cron.ts: two ticks of one job, each gets only its own image",
     async () => {
  const client = connect();
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
