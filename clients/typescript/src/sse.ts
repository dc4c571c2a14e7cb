/**
 * A server-sent events reader (the WHATWG event-stream format): bytes in, events out.
 * Small on purpose: the client needs no dependency for it.
 */

export interface SseEvent {
  /** the `event:` field; "message" when the server sent none */
  event: string;
  /** the `data:` lines joined with "\n" */
  data: string;
  /** the `id:` field of this event, or the last one seen on this stream ("" for none) */
  id: string;
}

export interface SseHooks {
  /** a comment line (the server's heartbeats), without its colon */
  onComment?: (text: string) => void;
  /** a `retry:` field: the reconnection delay the server asks for, in milliseconds */
  onRetry?: (ms: number) => void;
}

/** Parses an event stream fed in text chunks of any size; complete events go to `onEvent`. */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private lastId = "";
  private sawCr = false;

  constructor(private readonly onEvent: (event: SseEvent) => void,
              private readonly hooks: SseHooks = {}) {}

  /** the id the next reconnect sends as Last-Event-ID */
  get lastEventId(): string {
    return this.lastId;
  }

  feed(chunk: string): void {
    if (chunk === "") return;
    let text = chunk;
    // a CRLF may be split across two chunks: the CR ended the line, drop the LF
    if (this.sawCr && text.startsWith("\n")) text = text.slice(1);
    this.sawCr = false;
    this.buffer += text;
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      if (cr === -1 && lf === -1) break;
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      this.line(this.buffer.slice(start, end));
      if (this.buffer[end] === "\r") {
        if (end + 1 === this.buffer.length) {
          this.sawCr = true;
          start = end + 1;
          break;
        }
        start = this.buffer[end + 1] === "\n" ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
    }
    this.buffer = this.buffer.slice(start);
  }

  private line(line: string): void {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) {
      this.hooks.onComment?.(line.slice(1).replace(/^ /, ""));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.hooks.onRetry?.(Number(value));
        break;
      default:
        break; // unknown fields are ignored, as the format says
    }
  }

  private dispatch(): void {
    if (this.data.length === 0) {
      this.event = ""; // an event without data is not dispatched, as the format says
      return;
    }
    const event: SseEvent = { event: this.event || "message", data: this.data.join("\n"),
                              id: this.lastId };
    this.data = [];
    this.event = "";
    this.onEvent(event);
  }
}

/** The events of one response body, in order; ends when the body ends. */
export async function* readEvents(body: ReadableStream<Uint8Array>,
                                  hooks: SseHooks = {}): AsyncGenerator<SseEvent> {
  const queue: SseEvent[] = [];
  const parser = new SseParser((e) => queue.push(e), hooks);
  const decoder = new TextDecoder();
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
      while (queue.length > 0) yield queue.shift() as SseEvent;
    }
    // an event not closed by a blank line when the stream ends is discarded, as the format says
  } finally {
    // a consumer that stops early must not leave the connection open
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
