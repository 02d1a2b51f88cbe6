// The e2e bad-input suite (test/e2e/bad-input.test.ts) once more, against replicas with an auth
// file (HERMES_KV_TEST_AUTH=1: every request carries an admin token, so each malformed request
// still reaches the validation it tests, behind the token check). Run as its own `bun test`
// process: the suite's cluster and module state are set up once per process.

import { expect, test } from "bun:test";
import { join } from "node:path";

const repoRoot = join(import.meta.dir, "..", "..");

test("the e2e bad-input suite passes with an auth file and an admin token", async () => {
  const child = Bun.spawn([process.execPath, "test", "test/e2e/bad-input.test.ts"], {
    cwd: repoRoot,
    env: { ...process.env, HERMES_KV_TEST_AUTH: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  const output = stdout + stderr;
  const passed = Number(/ (\d+) pass/.exec(output)?.[1] ?? "0");
  const failed = Number(/ (\d+) fail/.exec(output)?.[1] ?? "-1");
  if (code !== 0 || failed !== 0) console.error(output.slice(-20_000));
  expect([code, failed]).toEqual([0, 0]);
  // Every test of the suite ran (none skipped or filtered away).
  expect(passed).toBeGreaterThanOrEqual(6);
}, 300_000);
