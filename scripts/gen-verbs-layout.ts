// Generates ffi/ibverbs/layout.ts (struct offsets, sizes and enum values of <infiniband/verbs.h>)
// by compiling a C probe with gcc against the installed libibverbs-dev headers and running it.
//
//   bun scripts/gen-verbs-layout.ts           write ffi/ibverbs/layout.ts
//   bun scripts/gen-verbs-layout.ts --check   exit 1 if the committed file differs from the headers
//
// Why generated and committed: the built binary must run with only libibverbs.so.1 present (no
// headers, no compiler), yet the FFI code must not carry offsets typed in from memory. The spec
// below names every field the FFI touches together with the width the TypeScript accessors use; the
// probe checks each width with sizeof, so a field that changes type fails generation instead of
// being read with the wrong accessor. test/ffi/layout.test.ts re-runs the generation and compares.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** Width of a field as the TypeScript side reads or writes it. */
type Width = "u8" | "u16" | "u32" | "i32" | "u64" | "ptr" | "gid" | "struct";

interface StructSpec {
  /** C struct name without `struct`. */
  c: string;
  /** Exported TypeScript name. */
  ts: string;
  /** C member designator (may be nested, "ops.poll_cq") -> width used by the FFI code. */
  fields: Record<string, Width>;
}

const widthBytes: Record<Exclude<Width, "struct">, number> = { u8: 1, u16: 2, u32: 4, i32: 4, u64: 8, ptr: 8, gid: 16 };

export const structSpecs: StructSpec[] = [
  {
    c: "ibv_context",
    ts: "ibvContext",
    fields: {
      device: "ptr",
      "ops.poll_cq": "ptr",
      "ops.req_notify_cq": "ptr",
      "ops.post_send": "ptr",
      "ops.post_recv": "ptr",
      num_comp_vectors: "i32",
    },
  },
  { c: "ibv_pd", ts: "ibvPd", fields: { context: "ptr", handle: "u32" } },
  {
    c: "ibv_mr",
    ts: "ibvMr",
    fields: { context: "ptr", pd: "ptr", addr: "ptr", length: "u64", handle: "u32", lkey: "u32", rkey: "u32" },
  },
  { c: "ibv_cq", ts: "ibvCq", fields: { context: "ptr", cqe: "i32" } },
  { c: "ibv_qp", ts: "ibvQp", fields: { context: "ptr", pd: "ptr", qp_num: "u32", state: "u32", qp_type: "u32" } },
  { c: "ibv_ah", ts: "ibvAh", fields: { context: "ptr", pd: "ptr", handle: "u32" } },
  { c: "ibv_sge", ts: "ibvSge", fields: { addr: "u64", length: "u32", lkey: "u32" } },
  {
    c: "ibv_send_wr",
    ts: "ibvSendWr",
    fields: {
      wr_id: "u64",
      next: "ptr",
      sg_list: "ptr",
      num_sge: "i32",
      opcode: "u32",
      send_flags: "u32",
      imm_data: "u32",
      "wr.rdma.remote_addr": "u64",
      "wr.rdma.rkey": "u32",
      "wr.ud.ah": "ptr",
      "wr.ud.remote_qpn": "u32",
      "wr.ud.remote_qkey": "u32",
    },
  },
  { c: "ibv_recv_wr", ts: "ibvRecvWr", fields: { wr_id: "u64", next: "ptr", sg_list: "ptr", num_sge: "i32" } },
  {
    c: "ibv_wc",
    ts: "ibvWc",
    fields: {
      wr_id: "u64",
      status: "u32",
      opcode: "u32",
      vendor_err: "u32",
      byte_len: "u32",
      imm_data: "u32",
      qp_num: "u32",
      src_qp: "u32",
      wc_flags: "u32",
      pkey_index: "u16",
      slid: "u16",
      sl: "u8",
      dlid_path_bits: "u8",
    },
  },
  {
    c: "ibv_qp_init_attr",
    ts: "ibvQpInitAttr",
    fields: {
      qp_context: "ptr",
      send_cq: "ptr",
      recv_cq: "ptr",
      srq: "ptr",
      "cap.max_send_wr": "u32",
      "cap.max_recv_wr": "u32",
      "cap.max_send_sge": "u32",
      "cap.max_recv_sge": "u32",
      "cap.max_inline_data": "u32",
      qp_type: "u32",
      sq_sig_all: "i32",
    },
  },
  {
    c: "ibv_ah_attr",
    ts: "ibvAhAttr",
    fields: {
      "grh.dgid": "gid",
      "grh.flow_label": "u32",
      "grh.sgid_index": "u8",
      "grh.hop_limit": "u8",
      "grh.traffic_class": "u8",
      dlid: "u16",
      sl: "u8",
      src_path_bits: "u8",
      static_rate: "u8",
      is_global: "u8",
      port_num: "u8",
    },
  },
  {
    c: "ibv_qp_attr",
    ts: "ibvQpAttr",
    fields: {
      qp_state: "u32",
      cur_qp_state: "u32",
      path_mtu: "u32",
      qkey: "u32",
      rq_psn: "u32",
      sq_psn: "u32",
      dest_qp_num: "u32",
      qp_access_flags: "u32",
      "cap.max_send_wr": "u32",
      "cap.max_recv_wr": "u32",
      "cap.max_send_sge": "u32",
      "cap.max_recv_sge": "u32",
      "cap.max_inline_data": "u32",
      ah_attr: "struct",
      pkey_index: "u16",
      max_rd_atomic: "u8",
      max_dest_rd_atomic: "u8",
      min_rnr_timer: "u8",
      port_num: "u8",
      timeout: "u8",
      retry_cnt: "u8",
      rnr_retry: "u8",
    },
  },
  {
    // Passed to the exported ibv_query_port, which fills the older (shorter) compat layout: the
    // fields below share their offsets with it. The buffer is sized for the full struct.
    c: "ibv_port_attr",
    ts: "ibvPortAttr",
    fields: {
      state: "u32",
      max_mtu: "u32",
      active_mtu: "u32",
      gid_tbl_len: "i32",
      port_cap_flags: "u32",
      max_msg_sz: "u32",
      pkey_tbl_len: "u16",
      lid: "u16",
      link_layer: "u8",
    },
  },
  { c: "ibv_gid_entry", ts: "ibvGidEntry", fields: { gid: "gid", gid_index: "u32", port_num: "u32", gid_type: "u32" } },
  {
    c: "ibv_device_attr",
    ts: "ibvDeviceAttr",
    fields: {
      max_mr_size: "u64",
      max_qp: "i32",
      max_qp_wr: "i32",
      max_sge: "i32",
      max_cq: "i32",
      max_cqe: "i32",
      phys_port_cnt: "u8",
    },
  },
  {
    c: "ibv_grh",
    ts: "ibvGrh",
    fields: { version_tclass_flow: "u32", paylen: "u16", next_hdr: "u8", hop_limit: "u8", sgid: "gid", dgid: "gid" },
  },
];

/** Enum values and flags the FFI code uses (TypeScript name -> C expression). */
export const constantSpecs: Record<string, string> = {
  QPT_RC: "IBV_QPT_RC",
  QPT_UC: "IBV_QPT_UC",
  QPT_UD: "IBV_QPT_UD",
  QPS_RESET: "IBV_QPS_RESET",
  QPS_INIT: "IBV_QPS_INIT",
  QPS_RTR: "IBV_QPS_RTR",
  QPS_RTS: "IBV_QPS_RTS",
  QPS_ERR: "IBV_QPS_ERR",
  QP_STATE: "IBV_QP_STATE",
  QP_ACCESS_FLAGS: "IBV_QP_ACCESS_FLAGS",
  QP_PKEY_INDEX: "IBV_QP_PKEY_INDEX",
  QP_PORT: "IBV_QP_PORT",
  QP_QKEY: "IBV_QP_QKEY",
  QP_AV: "IBV_QP_AV",
  QP_PATH_MTU: "IBV_QP_PATH_MTU",
  QP_TIMEOUT: "IBV_QP_TIMEOUT",
  QP_RETRY_CNT: "IBV_QP_RETRY_CNT",
  QP_RNR_RETRY: "IBV_QP_RNR_RETRY",
  QP_RQ_PSN: "IBV_QP_RQ_PSN",
  QP_MAX_QP_RD_ATOMIC: "IBV_QP_MAX_QP_RD_ATOMIC",
  QP_MIN_RNR_TIMER: "IBV_QP_MIN_RNR_TIMER",
  QP_SQ_PSN: "IBV_QP_SQ_PSN",
  QP_MAX_DEST_RD_ATOMIC: "IBV_QP_MAX_DEST_RD_ATOMIC",
  QP_DEST_QPN: "IBV_QP_DEST_QPN",
  WR_RDMA_WRITE: "IBV_WR_RDMA_WRITE",
  WR_SEND: "IBV_WR_SEND",
  WR_SEND_WITH_IMM: "IBV_WR_SEND_WITH_IMM",
  SEND_FENCE: "IBV_SEND_FENCE",
  SEND_SIGNALED: "IBV_SEND_SIGNALED",
  SEND_SOLICITED: "IBV_SEND_SOLICITED",
  SEND_INLINE: "IBV_SEND_INLINE",
  WC_SUCCESS: "IBV_WC_SUCCESS",
  WC_WR_FLUSH_ERR: "IBV_WC_WR_FLUSH_ERR",
  WC_SEND: "IBV_WC_SEND",
  WC_RDMA_WRITE: "IBV_WC_RDMA_WRITE",
  WC_RECV: "IBV_WC_RECV",
  WC_GRH: "IBV_WC_GRH",
  WC_WITH_IMM: "IBV_WC_WITH_IMM",
  ACCESS_LOCAL_WRITE: "IBV_ACCESS_LOCAL_WRITE",
  ACCESS_REMOTE_WRITE: "IBV_ACCESS_REMOTE_WRITE",
  ACCESS_REMOTE_READ: "IBV_ACCESS_REMOTE_READ",
  PORT_DOWN: "IBV_PORT_DOWN",
  PORT_ACTIVE: "IBV_PORT_ACTIVE",
  MTU_256: "IBV_MTU_256",
  MTU_512: "IBV_MTU_512",
  MTU_1024: "IBV_MTU_1024",
  MTU_2048: "IBV_MTU_2048",
  MTU_4096: "IBV_MTU_4096",
  LINK_LAYER_UNSPECIFIED: "IBV_LINK_LAYER_UNSPECIFIED",
  LINK_LAYER_INFINIBAND: "IBV_LINK_LAYER_INFINIBAND",
  LINK_LAYER_ETHERNET: "IBV_LINK_LAYER_ETHERNET",
  GID_TYPE_IB: "IBV_GID_TYPE_IB",
  GID_TYPE_ROCE_V1: "IBV_GID_TYPE_ROCE_V1",
  GID_TYPE_ROCE_V2: "IBV_GID_TYPE_ROCE_V2",
};

/** What the probe measured: struct -> { size, field -> offset }, and constant -> value. */
export interface LayoutData {
  structs: Record<string, Record<string, number>>;
  constants: Record<string, number>;
}

/** Field key in TypeScript: the C designator with dots turned into underscores. */
export function fieldKey(designator: string): string {
  return designator.replaceAll(".", "_");
}

const repoRoot = resolve(import.meta.dir, "..");
export const layoutPath = join(repoRoot, "ffi/ibverbs/layout.ts");

function probeSource(): string {
  const lines: string[] = [
    "#include <stdio.h>",
    "#include <stddef.h>",
    "#include <infiniband/verbs.h>",
    "#define M(t, f) sizeof(((struct t *)0)->f)",
    "int main(void) {",
  ];
  // One line per fact: "S <struct> <size>", "F <struct> <field> <offset> <bytes>", "C <name> <value>".
  for (const s of structSpecs) {
    lines.push(`  printf("S ${s.c} %zu\\n", sizeof(struct ${s.c}));`);
    for (const f of Object.keys(s.fields)) {
      lines.push(`  printf("F ${s.c} ${f} %zu %zu\\n", offsetof(struct ${s.c}, ${f}), M(${s.c}, ${f}));`);
    }
  }
  for (const [name, expr] of Object.entries(constantSpecs)) {
    lines.push(`  printf("C ${name} %lld\\n", (long long)(${expr}));`);
  }
  lines.push("  return 0;", "}");
  return lines.join("\n") + "\n";
}

/** Why the layout cannot be generated here (no gcc or no verbs headers), or null when it can. */
export function layoutToolchainMissing(): string | null {
  if (Bun.which("gcc") === null) return "gcc is not installed";
  if (!Bun.file("/usr/include/infiniband/verbs.h").size)
    return "libibverbs-dev headers (/usr/include/infiniband/verbs.h) are not installed";
  return null;
}

/** Compiles and runs the probe; returns the measured layout. Throws with gcc's output on failure. */
export function measureLayout(): LayoutData {
  const dir = mkdtempSync(join(tmpdir(), "verbs-layout-"));
  try {
    const src = join(dir, "probe.c");
    const exe = join(dir, "probe");
    writeFileSync(src, probeSource());
    const cc = Bun.spawnSync(["gcc", "-std=gnu11", "-Wall", "-Werror", "-o", exe, src], { stderr: "pipe" });
    if (cc.exitCode !== 0) throw new Error(`gcc failed on the verbs layout probe:\n${cc.stderr.toString()}`);
    const run = Bun.spawnSync([exe], { stdout: "pipe", stderr: "pipe" });
    if (run.exitCode !== 0) throw new Error(`verbs layout probe exited ${run.exitCode}: ${run.stderr.toString()}`);
    return parseProbeOutput(run.stdout.toString());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function parseProbeOutput(out: string): LayoutData {
  const data: LayoutData = { structs: {}, constants: {} };
  const byC = new Map(structSpecs.map((s) => [s.c, s]));
  for (const line of out.trim().split("\n")) {
    const parts = line.split(" ");
    if (parts[0] === "S") {
      const s = byC.get(parts[1]!);
      if (s === undefined) throw new Error(`probe printed an unknown struct: ${line}`);
      data.structs[s.ts] = { size: Number(parts[2]) };
    } else if (parts[0] === "F") {
      const s = byC.get(parts[1]!)!;
      const designator = parts[2]!;
      const offset = Number(parts[3]);
      const bytes = Number(parts[4]);
      const width = s.fields[designator]!;
      // A width mismatch means the FFI code would read the field with the wrong accessor.
      if (width !== "struct" && widthBytes[width] !== bytes) {
        throw new Error(
          `struct ${s.c}.${designator} is ${bytes} bytes in the headers; the FFI code reads it as ${width}`,
        );
      }
      data.structs[s.ts]![fieldKey(designator)] = offset;
    } else if (parts[0] === "C") {
      data.constants[parts[1]!] = Number(parts[2]);
    } else {
      throw new Error(`unexpected probe output line: ${line}`);
    }
  }
  return data;
}

function headerVersion(): string {
  const q = Bun.spawnSync(["dpkg-query", "-W", "-f=${Version}", "libibverbs-dev"], { stdout: "pipe", stderr: "pipe" });
  return q.exitCode === 0 ? `libibverbs-dev ${q.stdout.toString().trim()}` : "libibverbs-dev (version unknown)";
}

/** Renders the TypeScript module. Deterministic: the same layout gives the same text. */
export function renderLayout(data: LayoutData, headers: string): string {
  const out: string[] = [
    "// GENERATED by scripts/gen-verbs-layout.ts from <infiniband/verbs.h> — do not edit.",
    `// Headers: ${headers}, ${process.arch}. Regenerate: bun scripts/gen-verbs-layout.ts`,
    "// Checked against the headers by test/ffi/layout.test.ts. Offsets and sizes are in bytes;",
    "// the comment after each field is the width the FFI code reads it with (checked by the probe).",
    "",
  ];
  for (const s of structSpecs) {
    const fields = data.structs[s.ts]!;
    out.push(`/** struct ${s.c} */`);
    out.push(`export const ${s.ts} = {`);
    out.push(`  size: ${fields.size},`);
    for (const [designator, width] of Object.entries(s.fields)) {
      out.push(`  ${fieldKey(designator)}: ${fields[fieldKey(designator)]}, // ${designator}: ${width}`);
    }
    out.push("} as const;", "");
  }
  out.push("/** Enum values and flags of verbs.h (IBV_ prefix dropped). */");
  out.push("export const ibv = {");
  for (const name of Object.keys(constantSpecs)) out.push(`  ${name}: ${data.constants[name]},`);
  out.push("} as const;", "");
  return out.join("\n");
}

if (import.meta.main) {
  const missing = layoutToolchainMissing();
  if (missing !== null) {
    console.error(`gen-verbs-layout: cannot generate: ${missing} (run scripts/install-deps.sh)`);
    process.exit(2);
  }
  const text = renderLayout(measureLayout(), headerVersion());
  if (process.argv.includes("--check")) {
    // Compare everything but the header line, which names the package version.
    const strip = (t: string) =>
      t
        .split("\n")
        .filter((l) => !l.startsWith("// Headers:"))
        .join("\n");
    const committed = readFileSync(layoutPath, "utf8");
    if (strip(committed) !== strip(text)) {
      console.error(`gen-verbs-layout: ${layoutPath} differs from the headers; run bun scripts/gen-verbs-layout.ts`);
      process.exit(1);
    }
    console.log("gen-verbs-layout: layout.ts matches the headers: ok");
  } else {
    writeFileSync(layoutPath, text);
    console.log(`gen-verbs-layout: wrote ${layoutPath}`);
  }
}
