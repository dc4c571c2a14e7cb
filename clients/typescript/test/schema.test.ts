/** The checked-in types are what the server's OpenAPI generates: the client cannot drift. */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { PYTHON } from "./harness.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

test("src/schema.d.ts equals a fresh generation from create_app().openapi()", async () => {
  const result = await new Promise<{ code: number; out: string }>((done) => {
    execFile(process.execPath, [resolve(ROOT, "scripts/generate.mjs"), "--check"],
             { env: { ...process.env, LEASEGATE_PYTHON: PYTHON }, cwd: ROOT },
             (error, stdout, stderr) => done({ code: error ? Number(error.code ?? 1) : 0,
                                               out: stdout + stderr }));
  });
  assert.equal(result.code, 0, result.out);
  assert.match(result.out, /matches the server's OpenAPI/);
});
