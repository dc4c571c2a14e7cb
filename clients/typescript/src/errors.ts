/** Every refusal of the gateway, and every failure to reach it, as one typed error. */

/** Why a lease was lost (409 `lease_lost`). */
export type LeaseLostReason = "superseded" | "expired" | "released" | "unknown" | string;

export interface LeasegateErrorInit {
  status: number;
  code: string;
  message: string;
  field?: string | undefined;
  reason?: string | undefined;
  body?: unknown;
  cause?: unknown;
}

export class LeasegateError extends Error {
  /** the HTTP status; 0 when the gateway could not be reached */
  readonly status: number;
  /** the stable code of `{"error": {"code"}}`: lease_lost, invalid, forbidden, not_found, ... */
  readonly code: string;
  /** the request field the refusal is about (`args.prompt`, `ttl`, `body`), when there is one */
  readonly field: string | undefined;
  /** for a lost lease: superseded, expired or released */
  readonly reason: string | undefined;
  /** the parsed JSON body of the refusal, for fields this class does not name */
  readonly body: unknown;

  constructor(init: LeasegateErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "LeasegateError";
    this.status = init.status;
    this.code = init.code;
    this.field = init.field;
    this.reason = init.reason;
    this.body = init.body;
  }

  /** the run no longer owns its session key: stop working on it */
  get leaseLost(): boolean {
    return this.status === 409 && this.code === "lease_lost";
  }

  /** worth trying again later: the gateway or its Redis is unavailable */
  get transient(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 503 ||
      this.status === 504;
  }
}

function text(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** The error a non-2xx response stands for; reads (and so consumes) its body. */
export async function errorFromResponse(response: Response): Promise<LeasegateError> {
  const raw = await response.text().catch(() => "");
  let body: unknown = raw;
  try {
    body = raw ? JSON.parse(raw) : undefined;
  } catch {
    // not JSON (a proxy's HTML page, say): keep the text as the message
  }
  const error = (body && typeof body === "object" && "error" in body)
    ? (body as { error: unknown }).error : undefined;
  if (error && typeof error === "object") {
    const e = error as Record<string, unknown>;
    return new LeasegateError({
      status: response.status,
      code: text(e["code"]) ?? `http_${response.status}`,
      message: text(e["message"]) ?? response.statusText,
      field: text(e["field"]),
      reason: text(e["reason"]),
      body,
    });
  }
  return new LeasegateError({
    status: response.status,
    code: `http_${response.status}`,
    message: `${response.status} ${response.statusText}${raw ? `: ${raw.slice(0, 200)}` : ""}`,
    body,
  });
}

/** A request that never got an answer (refused connection, reset, DNS). */
export function networkError(cause: unknown, what: string): LeasegateError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new LeasegateError({ status: 0, code: "unreachable",
                              message: `${what}: ${detail}`, cause });
}
