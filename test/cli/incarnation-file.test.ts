// The local cluster's on-disk incarnation count (src/cli/incarnation-file.ts), on real files.

import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { claimIncarnationIn, incarnationFileName } from "../../src/cli/incarnation-file.ts";
import { incarnationMax } from "../../src/base/ids.ts";

const dirs: string[] = [];
function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "hermes-incarnation-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

test("each start of a replica on one data dir claims the next incarnation, kept on disk", () => {
  const dir = freshDir();
  expect(claimIncarnationIn(dir)).toBe(0);
  expect(claimIncarnationIn(dir)).toBe(1);
  expect(claimIncarnationIn(dir)).toBe(2);
  expect(readFileSync(join(dir, incarnationFileName), "utf8")).toBe("2\n");
  // Another dir counts on its own.
  expect(claimIncarnationIn(freshDir())).toBe(0);
});

test("a file that is not a count, or a used-up count, is refused and left as it was", () => {
  const dir = freshDir();
  const path = join(dir, incarnationFileName);
  for (const text of ["", "x\n", "-1\n", "01\n", "1.5\n"]) {
    writeFileSync(path, text);
    expect(() => claimIncarnationIn(dir)).toThrow(/does not hold an incarnation count/);
    expect(readFileSync(path, "utf8")).toBe(text);
  }
  writeFileSync(path, `${incarnationMax}\n`);
  expect(() => claimIncarnationIn(dir)).toThrow(/used up/);
  expect(readFileSync(path, "utf8")).toBe(`${incarnationMax}\n`);
});
