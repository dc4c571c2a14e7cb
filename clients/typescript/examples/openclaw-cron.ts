/**
 * The cron-isolated pattern (OpenClaw #86490) on leasegate, end to end.
 *
 * Every tick of a cron job is a fresh run of the job's session key `cron:<job id>`: starting it
 * supersedes whatever the previous tick left behind, so that tick's late image can never
 * become this run's entry 2. The run asks for an image, parks (no heartbeats while it
 * renders), holds the SSE stream until its own result arrives, and releases.
 *
 *   LEASEGATE_URL=http://127.0.0.1:8080 LEASEGATE_TOKEN=<runtime token> \
 *     node build/examples/openclaw-cron.js daily-header "Draw today's header"
 */

import { writeFile } from "node:fs/promises";

import { LeasegateClient, LeasegateError, type RunState } from "../src/index.js";

export interface CronJob {
  /** the job's id: its runs share the session key cron:<id> */
  id: string;
  prompt: string;
  /** the lease of a tick, in seconds, until it parks */
  ttl?: number;
  /** how long a tick may wait for its image, in seconds */
  maxWait?: number;
}

export interface TickResult {
  runId: string;
  fence: number;
  /** released: done; superseded or expired: a newer tick took over, this one stops */
  state: RunState;
  image: Uint8Array | null;
}

/** One tick: a fresh run, one image, released; returns what the tick got. */
export async function runTick(client: LeasegateClient, job: CronJob): Promise<TickResult> {
  const run = await client.startRun({ sessionKey: `cron:${job.id}`, prompt: job.prompt,
                                      ttl: job.ttl ?? 60 });
  const tick = (image: Uint8Array | null): TickResult =>
    ({ runId: run.runId, fence: run.fence, state: run.state, image });
  try {
    const callbackId = await run.submit("image_generate", { prompt: job.prompt,
                                                            size: "256x256" });
    await run.park(job.maxWait ?? 300);
    // entry 1 is our own prompt; everything after it is ours too: the gate saw to that
    for await (const entry of run.results({ after: 1 })) {
      if (entry.callback_id !== callbackId) continue;
      if (entry.kind !== "result") {
        throw new Error(`image_generate failed: ${JSON.stringify(entry.payload)}`);
      }
      const artifact = entry.artifacts[0];
      const image = artifact ? await client.fetchArtifact(artifact) : null;
      await run.renew(); // live again for the rest of the work (posting the image, say)
      await run.release("completed");
      return tick(image);
    }
    return tick(null); // the stream ended: superseded or expired before the image came
  } catch (error) {
    if (error instanceof LeasegateError && error.leaseLost) {
      run.state = (error.reason ?? "unknown") as RunState;
      return tick(null); // a newer tick owns the session: stop quietly
    }
    await run.release("failed").catch(() => undefined);
    throw error;
  }
}

async function main(argv: string[]): Promise<number> {
  const baseUrl = process.env["LEASEGATE_URL"];
  const token = process.env["LEASEGATE_TOKEN"];
  const [id = "daily-header", prompt = "Draw today's header for the digest"] = argv;
  if (!baseUrl || !token) {
    console.error("set LEASEGATE_URL and LEASEGATE_TOKEN (a runtime token for cron:)");
    return 2;
  }
  const result = await runTick(new LeasegateClient({ baseUrl, token }), { id, prompt });
  console.log(`run ${result.runId} (fence ${result.fence}): ${result.state}`);
  if (result.image) {
    await writeFile(`${id}.png`, result.image);
    console.log(`wrote ${id}.png (${result.image.length} bytes)`);
  }
  return result.state === "released" ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
