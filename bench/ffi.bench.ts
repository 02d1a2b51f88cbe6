// FFI call overhead (mitata): a plain libnuma call, a plain exported C function, and the data-path
// verbs called through a provider's ops table with CFunction (ffi/ibverbs OpsTable), as the RDMA
// transport calls ibv_post_send / ibv_post_recv / ibv_poll_cq.
//
//   bun bench/ffi.bench.ts
//
// The ops table belongs to a fake provider compiled here with gcc (test/ffi/fake-provider.c: real
// struct ibv_context/ibv_qp/ibv_cq from the headers, functions that walk the work requests like a
// provider), so the host needs no RDMA device: what is measured is the JS -> native transition and
// the argument marshalling, not a NIC. With an RDMA device present, a last group measures one frame
// through the RDMA transport (send, flush, poll until delivered). Timings taken inside the TCG
// guest of scripts/rdma-vm.sh are functional checks, not benchmarks: TCG emulates every instruction.

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { allocNativeBuffer } from "../ffi/numa/numa.ts";
import { numaAvailable, numaNodeOfCpu } from "../ffi/numa/numa.ts";
import { ibv, ibvRecvWr, ibvSendWr, ibvSge } from "../ffi/ibverbs/layout.ts";
import { OpsTable } from "../ffi/ibverbs/verbs.ts";
import { buildFakeProvider, fakeProviderMissing } from "../test/ffi/fake-provider.ts";
import { RdmaTransport, rdmaDeviceAvailable } from "../src/transport/rdma.ts";

const { i32 } = FFIType;

if (numaAvailable()) {
  const libnuma = dlopen("libnuma.so.1", {
    numa_max_node: { args: [], returns: i32 },
    numa_node_of_cpu: { args: [i32], returns: i32 },
  }).symbols;
  group("libnuma", () => {
    // numa_max_node returns a cached value: the cost of the call itself.
    bench("numa_max_node(): bun:ffi symbol", () => do_not_optimize(libnuma.numa_max_node()));
    // numa_node_of_cpu scans every node's CPU mask (copied per call in libnuma 2.0.16).
    bench("numa_node_of_cpu(0): bun:ffi symbol", () => do_not_optimize(libnuma.numa_node_of_cpu(0)));
    bench("numaNodeOfCpu(0): ffi/numa wrapper (checks, errno on failure)", () => do_not_optimize(numaNodeOfCpu(0)));
  });
} else {
  console.log("ffi.bench: libnuma unavailable, skipping its group");
}

const missing = fakeProviderMissing();
if (missing === null) {
  const fake = buildFakeProvider().symbols;
  const ops = new OpsTable(fake.fake_context() as Pointer, "fake");
  const qp = fake.fake_qp() as Pointer;
  const cq = fake.fake_cq() as Pointer;
  // Native work requests, as the transport keeps them: one send WR + SGE, a chain of 16 receive
  // WRs, bad_wr, and room for 16 work completions.
  const mem = allocNativeBuffer(16384);
  const base = mem.address as number;
  const v = new DataView(mem.buffer);
  const sendWr = base;
  const sge = base + 256;
  v.setBigUint64(ibvSendWr.sg_list, BigInt(sge), true);
  v.setInt32(ibvSendWr.num_sge, 1, true);
  v.setUint32(ibvSendWr.opcode, ibv.WR_SEND, true);
  v.setUint32(256 + ibvSge.length, 64, true);
  const recvWrs = base + 1024;
  for (let i = 0; i < 16; i++) {
    const off = 1024 + i * ibvRecvWr.size;
    v.setBigUint64(off + ibvRecvWr.wr_id, BigInt(i), true);
    v.setBigUint64(off + ibvRecvWr.next, i < 15 ? BigInt(recvWrs + (i + 1) * ibvRecvWr.size) : 0n, true);
  }
  const badWr = base + 4096;
  const wcs = base + 8192;

  group("exported function vs ops-table CFunction", () => {
    summary(() => {
      bench("fake_noop(1): bun:ffi symbol", () => do_not_optimize(fake.fake_noop(1)));
      bench("ops.post_send(qp, 1 WR): CFunction", () => do_not_optimize(ops.postSend(qp, sendWr, badWr)));
      bench("ops.post_recv(qp, 16 WRs): CFunction", () => do_not_optimize(ops.postRecv(qp, recvWrs, badWr)));
      bench("ops.poll_cq(cq, 1): CFunction", () => do_not_optimize(ops.pollCq(cq, 1, wcs)));
      bench("ops.poll_cq(cq, 16): CFunction", () => do_not_optimize(ops.pollCq(cq, 16, wcs)));
    });
  });
} else {
  console.log(`ffi.bench: fake provider unavailable (${missing}), skipping the ops-table group`);
}

const device = rdmaDeviceAvailable();
if (device !== null) {
  const a = new RdmaTransport({ self: 1, device });
  const b = new RdmaTransport({ self: 2, device });
  a.connect(2, b.address);
  b.connect(1, a.address);
  const frame = new Uint8Array(64).fill(7);
  let got = 0;
  const handler = () => void got++;
  group(`RDMA transport over ${device}`, () => {
    bench("one 64-byte frame: send, flush, poll until delivered", () => {
      const want = got + 1;
      a.send(2, frame);
      a.flush();
      while (got < want) {
        b.poll(handler);
        b.flush(); // returns credits when half a window is consumed
        a.poll(handler);
      }
    });
  });
} else {
  console.log("ffi.bench: no RDMA device, skipping the transport group");
}

await run({ colors: false });
