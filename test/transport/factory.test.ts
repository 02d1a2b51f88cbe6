// createTransport maps every network kind to its transport, rdma included (the worker builds its
// endpoint only through the factory). RDMA itself is exercised on a device by test/rdma.

import { expect, test } from "bun:test";
import { createTransport, isNetworkTransportKind } from "../../src/transport/factory.ts";
import { rdmaDeviceAvailable } from "../../src/transport/rdma.ts";

const common = { host: "127.0.0.1", port: 0, self: 1, frameBytesMax: 1024 };

test("the network kinds, and only they, are built by the factory", () => {
  expect(isNetworkTransportKind("udp")).toBe(true);
  expect(isNetworkTransportKind("tcp")).toBe(true);
  expect(isNetworkTransportKind("rdma")).toBe(true);
  expect(isNetworkTransportKind("sim")).toBe(false);
});

test("udp and tcp come out of the factory as themselves", async () => {
  for (const kind of ["udp", "tcp"] as const) {
    const t = await createTransport(kind, common);
    try {
      expect(t.kind).toBe(kind);
      expect(t.frameBytesMax).toBe(1024);
    } finally {
      t.close();
    }
  }
});

test.skipIf(rdmaDeviceAvailable() !== null)("rdma goes through the factory: without a device it says so", async () => {
  await expect(createTransport("rdma", common)).rejects.toThrow(/no RDMA device/);
  // Options are checked before any device is looked for.
  await expect(createTransport("rdma", { ...common, rdma: { windowDatagrams: 1 } })).rejects.toThrow(RangeError);
});
