// Which RDMA device the device tests use, and whether its absence is a failure.
// On a host without RDMA the device tests skip; the RDMA guest (scripts/rdma-vm.sh) sets
// RDMA_TEST_REQUIRE_DEVICE=1 so that a missing device fails instead of silently skipping.

import { listDevices } from "../../ffi/ibverbs/verbs.ts";

export const deviceRequired = process.env.RDMA_TEST_REQUIRE_DEVICE === "1";

/** RDMA_DEVICE if set and present, else the first device, else null. */
export function testDeviceName(): string | null {
  const names = listDevices();
  const wanted = process.env.RDMA_DEVICE;
  if (wanted !== undefined && wanted !== "") return names.includes(wanted) ? wanted : null;
  return names[0] ?? null;
}
