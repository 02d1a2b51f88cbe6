// The committed ffi/ibverbs/layout.ts must match the installed <infiniband/verbs.h>: regenerate the
// offsets with gcc and compare. Skipped (with the reason) where gcc or the headers are absent, e.g.
// inside the RDMA guest, where the wrappers' use of a real device checks the same offsets.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import * as layout from "../../ffi/ibverbs/layout.ts";
import {
  layoutPath,
  layoutToolchainMissing,
  measureLayout,
  renderLayout,
  structSpecs,
  constantSpecs,
  fieldKey,
} from "../../scripts/gen-verbs-layout.ts";

const missing = layoutToolchainMissing();
if (missing !== null) console.log(`layout.test: regeneration skipped: ${missing}`);

describe.skipIf(missing !== null)("verbs layout generated from the C headers", () => {
  const measured = missing === null ? measureLayout() : null;

  test("every struct size and field offset matches the committed layout.ts", () => {
    const committed = layout as unknown as Record<string, Record<string, number>>;
    for (const s of structSpecs) {
      const expected = measured!.structs[s.ts]!;
      expect({ struct: s.c, ...committed[s.ts] }).toEqual({ struct: s.c, ...expected });
      for (const f of Object.keys(s.fields)) expect(committed[s.ts]![fieldKey(f)]).toBeNumber();
    }
  });

  test("every constant matches", () => {
    for (const name of Object.keys(constantSpecs)) {
      expect({ name, value: (layout.ibv as Record<string, number>)[name] }).toEqual({
        name,
        value: measured!.constants[name]!,
      });
    }
  });

  test("the committed file is exactly what the generator renders (apart from the version line)", () => {
    const strip = (t: string) =>
      t
        .split("\n")
        .filter((l) => !l.startsWith("// Headers:"))
        .join("\n");
    expect(strip(readFileSync(layoutPath, "utf8"))).toBe(strip(renderLayout(measured!, "")));
  });
});

describe("layout facts the data path relies on", () => {
  test("the UD and RDMA members of ibv_send_wr.wr share the union's offset", () => {
    expect(layout.ibvSendWr.wr_ud_ah).toBe(layout.ibvSendWr.wr_rdma_remote_addr);
  });
  test("the GRH that a UD receive buffer starts with is 40 bytes", () => {
    expect(layout.ibvGrh.size).toBe(40);
  });
});
