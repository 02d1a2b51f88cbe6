// src/core must stay a pure state machine: no clock, randomness, timers, I/O or runtime APIs.
// This test reads the sources and fails on any banned identifier, so the simulator keeps driving
// exactly the code the workers run.

import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const coreDir = join(import.meta.dir, "../../src/core");
const banned: [RegExp, string][] = [
  [/\bawait\b/, "await"],
  [/\basync\b/, "async"],
  [/\bDate\b/, "Date"],
  [/Math\.random/, "Math.random"],
  [/\bperformance\b/, "performance"],
  [/\bsetTimeout\b|\bsetInterval\b|\bsetImmediate\b|\bqueueMicrotask\b/, "timers"],
  [/\bBun\./, "Bun.*"],
  [/bun:ffi|bun:sqlite/, "bun: modules"],
  [/\bWorker\b/, "Worker"],
  [/\bprocess\./, "process"],
  [/\bfetch\(/, "fetch"],
  [/from\s+["'](node:|fs|net|os|child_process)/, "node modules"],
  [/\bconsole\./, "console"],
];

function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
}

test("src/core has no I/O, clock, randomness, timers or runtime APIs", () => {
  const files = readdirSync(coreDir).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"));
  expect(files.length).toBeGreaterThan(3);
  const found: string[] = [];
  for (const file of files) {
    const code = stripComments(readFileSync(join(coreDir, file), "utf8"));
    for (const [pattern, name] of banned) if (pattern.test(code)) found.push(`${file}: ${name}`);
  }
  expect(found).toEqual([]);
});

test("the purity check itself detects a banned identifier", () => {
  const sample = stripComments("const t = Date.now(); // Math.random in a comment is fine");
  expect(banned.some(([p]) => p.test(sample))).toBe(true);
  expect(banned.some(([p]) => p.test(stripComments("// Math.random only in a comment")))).toBe(false);
});
