/** The SSE reader against the event-stream format, fed in every possible chunking. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { readEvents, SseParser, type SseEvent } from "../src/sse.js";

const STREAM = ": heartbeat\r\n" +
  "retry: 1500\n" +
  "event: entry\nid: 1\ndata: {\"seq\":1,\ndata:\"x\":2}\n ignored: field\n\n" +
  "event: state\r\ndata: {\"state\":\"released\"}\r\n\r\n" +
  "id: 2\rdata\r\r" +
  "data: only\n\n" +
  "event: dropped\n\n" +
  "id: 3\ndata: unterminated";

const EXPECTED: SseEvent[] = [
  { event: "entry", id: "1", data: "{\"seq\":1,\n\"x\":2}" },
  { event: "state", id: "1", data: "{\"state\":\"released\"}" },
  { event: "message", id: "2", data: "" },
  { event: "message", id: "2", data: "only" },
];

function parse(chunks: string[]): { events: SseEvent[]; comments: string[]; retries: number[];
                                     lastId: string } {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const retries: number[] = [];
  const parser = new SseParser((e) => events.push(e), {
    onComment: (c) => comments.push(c), onRetry: (ms) => retries.push(ms) });
  for (const chunk of chunks) parser.feed(chunk);
  return { events, comments, retries, lastId: parser.lastEventId };
}

test("events, ids, comments and retry in one chunk", () => {
  const { events, comments, retries, lastId } = parse([STREAM]);
  assert.deepEqual(events, EXPECTED);
  assert.deepEqual(comments, ["heartbeat"]);
  assert.deepEqual(retries, [1500]);
  // the unterminated event is never dispatched, but its id line was read
  assert.equal(lastId, "3");
});

test("every split point gives the same events (CRLF split across chunks included)", () => {
  for (let i = 0; i <= STREAM.length; i++) {
    for (const j of [i, Math.min(STREAM.length, i + 1), Math.min(STREAM.length, i + 7)]) {
      const { events } = parse([STREAM.slice(0, i), STREAM.slice(i, j), STREAM.slice(j)]);
      assert.deepEqual(events, EXPECTED, `split at ${i}/${j}`);
    }
  }
});

test("byte by byte through readEvents: a UTF-8 character split across chunks survives", async () => {
  const bytes = new TextEncoder().encode("event: entry\nid: 7\ndata: {\"payload\":\"héllo ✓\"}\n\n");
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));
      controller.close();
    },
  });
  const seen: SseEvent[] = [];
  for await (const event of readEvents(body)) seen.push(event);
  assert.deepEqual(seen, [{ event: "entry", id: "7", data: "{\"payload\":\"héllo ✓\"}" }]);
});

test("an id with NUL is ignored, a bad retry is ignored", () => {
  const { events, retries } = parse(["id: 4\n", "id: a\0b\nretry: 12x\ndata: d\n\n"]);
  assert.deepEqual(events, [{ event: "message", id: "4", data: "d" }]);
  assert.deepEqual(retries, []);
});
