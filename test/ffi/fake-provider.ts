// Builds and loads test/ffi/fake-provider.c (a fake verbs provider whose ops table the FFI data
// path calls through) for host tests and bench/ffi.bench.ts. Needs gcc and libibverbs-dev;
// `fakeProviderMissing()` says why not when they are absent (e.g. inside the RDMA guest).

import { dlopen, FFIType } from "bun:ffi";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { layoutToolchainMissing } from "../../scripts/gen-verbs-layout.ts";

const { ptr, i32, u32, u64, void: voidType } = FFIType;

const definitions = {
  fake_context: { args: [], returns: ptr },
  fake_qp: { args: [], returns: ptr },
  fake_cq: { args: [], returns: ptr },
  fake_noop: { args: [i32], returns: i32 },
  fake_reset: { args: [], returns: voidType },
  fake_send_wr_count: { args: [], returns: u64 },
  fake_send_wr_id_sum: { args: [], returns: u64 },
  fake_send_bytes_sum: { args: [], returns: u64 },
  fake_recv_wr_count: { args: [], returns: u64 },
  fake_recv_wr_id_sum: { args: [], returns: u64 },
  fake_last_remote_qpn: { args: [], returns: u32 },
  fake_last_remote_qkey: { args: [], returns: u32 },
  fake_last_opcode: { args: [], returns: u32 },
  fake_last_send_flags: { args: [], returns: u32 },
} as const;

export type FakeProvider = ReturnType<typeof dlopen<typeof definitions>>;

/** Why the fake provider cannot be built here, or null. */
export function fakeProviderMissing(): string | null {
  return layoutToolchainMissing();
}

/** Compiles the fake provider into a temporary directory and loads it. close() unloads it. */
export function buildFakeProvider(): FakeProvider {
  const dir = mkdtempSync(join(tmpdir(), "fake-verbs-"));
  try {
    const so = join(dir, "libfakeverbs.so");
    const cc = Bun.spawnSync(
      [
        "gcc",
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-Werror",
        "-shared",
        "-fPIC",
        "-o",
        so,
        join(import.meta.dir, "fake-provider.c"),
      ],
      { stderr: "pipe" },
    );
    if (cc.exitCode !== 0) throw new Error(`gcc failed on fake-provider.c:\n${cc.stderr.toString()}`);
    return dlopen(so, definitions);
  } finally {
    // The loaded library stays mapped after its file is removed.
    rmSync(dir, { recursive: true, force: true });
  }
}
