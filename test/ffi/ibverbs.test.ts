// ffi/ibverbs: the no-device path (any host), the ops-table data path against a fake provider
// (hosts with gcc), and the wrappers against a real device (Soft-RoCE in the RDMA guest).

import { describe, expect, test } from "bun:test";
import { read, type Pointer } from "bun:ffi";
import { NativeError } from "../../ffi/libc.ts";
import { allocNativeBuffer, type NativeBuffer } from "../../ffi/numa/numa.ts";
import { ibv, ibvRecvWr, ibvSendWr, ibvSge, ibvWc } from "../../ffi/ibverbs/layout.ts";
import { verbsLibraryMissing } from "../../ffi/ibverbs/symbols.ts";
import {
  gidFromHex,
  gidIsIpv4Mapped,
  gidToHex,
  listDevices,
  mtuBytes,
  openDevice,
  OpsTable,
  wcStatusString,
  type GidEntry,
} from "../../ffi/ibverbs/verbs.ts";
import { buildFakeProvider, fakeProviderMissing } from "./fake-provider.ts";
import { deviceRequired, testDeviceName } from "./rdma-device.ts";

const ENODEV = 19;
const ENOMEM = 12;
const device = testDeviceName();

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected an error");
}

test("helpers: GIDs, MTUs", () => {
  const g = gidFromHex("0000:0000:0000:0000:0000:ffff:7f00:0001");
  expect(gidToHex(g)).toBe("00000000000000000000ffff7f000001");
  expect(gidIsIpv4Mapped(g)).toBe(true);
  expect(gidIsIpv4Mapped(gidFromHex("fe800000000000000000000000000001"))).toBe(false);
  expect(() => gidFromHex("12")).toThrow(/not a GID/);
  expect(mtuBytes(ibv.MTU_1024)).toBe(1024);
  expect(mtuBytes(ibv.MTU_4096)).toBe(4096);
  expect(() => mtuBytes(9)).toThrow(RangeError);
});

describe.skipIf(device !== null || deviceRequired)("no RDMA device on this machine", () => {
  test("the device list is empty, not an error", () => {
    expect(verbsLibraryMissing()).toBeNull();
    expect(listDevices()).toEqual([]);
  });

  test("opening a device fails with a NativeError that names the call and errno", () => {
    const e = catchError(() => openDevice()) as NativeError;
    expect(e).toBeInstanceOf(NativeError);
    expect(e.call).toBe("ibv_get_device_list");
    expect(e.errno).toBe(ENODEV);
    expect(e.message).toContain("No such device");
    expect(e.message).toContain("no RDMA devices");
  });
});

describe.skipIf(fakeProviderMissing() !== null)("data path through the ops table (fake provider)", () => {
  const fake = fakeProviderMissing() === null ? buildFakeProvider() : null;

  test("post_send, post_recv and poll_cq reach the provider's functions with our structs", () => {
    const f = fake!.symbols;
    const ops = new OpsTable(f.fake_context() as Pointer, "fake");
    using mem = allocNativeBuffer(4096);
    const v = new DataView(mem.buffer);
    const base = mem.address as number;
    // Two chained send WRs with one SGE each, at 0 and 128; SGEs at 512 and 528; bad_wr at 1024.
    for (let i = 0; i < 2; i++) {
      const wr = i * ibvSendWr.size;
      const sge = 512 + i * ibvSge.size;
      v.setBigUint64(wr + ibvSendWr.wr_id, BigInt(10 + i), true);
      v.setBigUint64(wr + ibvSendWr.next, BigInt(i === 0 ? base + ibvSendWr.size : 0), true);
      v.setBigUint64(wr + ibvSendWr.sg_list, BigInt(base + sge), true);
      v.setInt32(wr + ibvSendWr.num_sge, 1, true);
      v.setUint32(wr + ibvSendWr.opcode, ibv.WR_SEND, true);
      v.setUint32(wr + ibvSendWr.send_flags, ibv.SEND_SIGNALED, true);
      v.setUint32(wr + ibvSendWr.wr_ud_remote_qpn, 0x1234, true);
      v.setUint32(wr + ibvSendWr.wr_ud_remote_qkey, 0x5678, true);
      v.setUint32(sge + ibvSge.length, 1000 + i, true);
    }
    f.fake_reset();
    expect(ops.postSend(f.fake_qp(), base, base + 1024)).toBe(0);
    expect(Number(f.fake_send_wr_count())).toBe(2);
    expect(Number(f.fake_send_wr_id_sum())).toBe(21);
    expect(Number(f.fake_send_bytes_sum())).toBe(2001);
    expect(f.fake_last_remote_qpn()).toBe(0x1234);
    expect(f.fake_last_remote_qkey()).toBe(0x5678);
    expect(f.fake_last_opcode()).toBe(ibv.WR_SEND);
    expect(f.fake_last_send_flags()).toBe(ibv.SEND_SIGNALED);

    // A refused request comes back as the provider's errno, and bad_wr points at it.
    v.setBigUint64(ibvSendWr.size + ibvSendWr.wr_id, 2n ** 64n - 1n, true);
    expect(ops.postSend(f.fake_qp(), base, base + 1024)).toBe(ENOMEM);
    expect(read.ptr(base as Pointer, 1024)).toBe(base + ibvSendWr.size);

    // Receive WRs: one, wr_id 5.
    v.setBigUint64(2048 + ibvRecvWr.wr_id, 5n, true);
    v.setBigUint64(2048 + ibvRecvWr.next, 0n, true);
    expect(ops.postRecv(f.fake_qp(), base + 2048, base + 1024)).toBe(0);
    expect(Number(f.fake_recv_wr_id_sum())).toBe(5);

    // poll_cq fills struct ibv_wc entries that we read with the generated offsets.
    expect(ops.pollCq(f.fake_cq(), 3, base + 2560)).toBe(3);
    for (let i = 0; i < 3; i++) {
      const wc = 2560 + i * ibvWc.size;
      expect(Number(v.getBigUint64(wc + ibvWc.wr_id, true))).toBe(i);
      expect(v.getUint32(wc + ibvWc.status, true)).toBe(ibv.WC_SUCCESS);
      expect(v.getUint32(wc + ibvWc.opcode, true)).toBe(ibv.WC_RECV);
      expect(v.getUint32(wc + ibvWc.byte_len, true)).toBe(100 + i);
      expect(v.getUint32(wc + ibvWc.src_qp, true)).toBe(4242);
      expect(v.getUint32(wc + ibvWc.wc_flags, true) & ibv.WC_GRH).toBe(ibv.WC_GRH);
    }
    ops.close();
    ops.close();
  });
});

if (device === null && deviceRequired) {
  test("an RDMA device is present (RDMA_TEST_REQUIRE_DEVICE=1)", () => {
    throw new Error(
      `no RDMA device found (RDMA_DEVICE=${process.env.RDMA_DEVICE ?? ""}, devices: ${listDevices().join(", ") || "none"})`,
    );
  });
}

/** Picks the GID to address this port with: RoCE v2 over IPv4 first, then RoCE v2, then any. */
function pickGid(entries: GidEntry[]): GidEntry {
  const g =
    entries.find((e) => e.type === "roce-v2" && gidIsIpv4Mapped(e.gid)) ??
    entries.find((e) => e.type === "roce-v2") ??
    entries[0];
  if (g === undefined) throw new Error("the port has no GID");
  return g;
}

/** Waits for `n` completions on `cq`, bounded by a poll count, failing on any error status. */
function pollUntil(
  cq: { poll(n: number, wc: Pointer): number },
  n: number,
  wcMem: NativeBuffer,
  pollsMax = 5_000_000,
): DataView[] {
  const out: DataView[] = [];
  const v = new DataView(wcMem.buffer);
  for (let polls = 0; out.length < n; polls++) {
    if (polls >= pollsMax) throw new Error(`only ${out.length} of ${n} completions after ${pollsMax} polls`);
    const got = cq.poll(1, wcMem.address);
    if (got === 1) {
      const status = v.getUint32(ibvWc.status, true);
      if (status !== ibv.WC_SUCCESS) throw new Error(`completion error: ${wcStatusString(status)}`);
      out.push(new DataView(v.buffer.slice(0, ibvWc.size)));
    }
  }
  return out;
}

describe.skipIf(device === null)(`real device ${device ?? "(none)"}`, () => {
  test("device, port and GID table", () => {
    expect(listDevices()).toContain(device!);
    using ctx = openDevice(device!);
    expect(ctx.deviceName).toBe(device!);
    const port = ctx.queryPort(1);
    expect(port.active).toBe(true);
    expect(port.activeMtuBytes).toBeGreaterThanOrEqual(256);
    const attrs = ctx.queryDevice();
    expect(attrs.maxQpWr).toBeGreaterThan(0);
    expect(attrs.portCount).toBeGreaterThanOrEqual(1);
    const gids = ctx.gidEntries(1);
    expect(gids.length).toBeGreaterThan(0);
    const g = pickGid(gids);
    expect(gidToHex(ctx.queryGid(1, g.index))).toBe(gidToHex(g.gid));
    console.log(
      `device ${device}: port mtu ${port.activeMtuBytes}, link ${port.linkLayer}, gids ${gids.map((e) => `${e.index}:${e.type}:${gidToHex(e.gid)}`).join(" ")}`,
    );
  });

  test("opening an unknown device names the devices that exist", () => {
    const e = catchError(() => openDevice("no-such-device")) as NativeError;
    expect(e).toBeInstanceOf(NativeError);
    expect(e.call).toBe("ibv_open_device");
    expect(e.errno).toBe(ENODEV);
    expect(e.message).toContain(device!);
  });

  test("UD: a datagram sent to our own QP arrives with a GRH, through the ops-table verbs", () => {
    using ctx = openDevice(device!);
    const gid = pickGid(ctx.gidEntries(1));
    const pd = ctx.allocPd();
    const scq = ctx.createCq(16);
    const rcq = ctx.createCq(16);
    const qp = pd.createQp({ type: "ud", sendCq: scq, recvCq: rcq, sendWrMax: 8, recvWrMax: 8 });
    expect(qp.qpn).toBeGreaterThan(0);
    expect(qp.state).toBe(ibv.QPS_RESET);
    const qkey = 0x11223344;
    qp.readyUd(1, qkey);
    expect(qp.state).toBe(ibv.QPS_RTS);
    const ah = pd.createAh({ port: 1, dgid: gid.gid, sgidIndex: gid.index });

    using data = allocNativeBuffer(8192);
    using work = allocNativeBuffer(4096);
    const mr = pd.registerMemory(data.address, data.bytes);
    expect(mr.start).toBe(data.address as number);
    const d = new Uint8Array(data.buffer);
    const w = new DataView(work.buffer);
    const wbase = work.address as number;
    const payload = new TextEncoder().encode("hermes over ud");
    d.set(payload, 0);

    // Receive WR at 0 (SGE at 256) into data[4096..] (40 bytes of GRH, then the payload).
    w.setBigUint64(ibvRecvWr.wr_id, 7n, true);
    w.setBigUint64(ibvRecvWr.sg_list, BigInt(wbase + 256), true);
    w.setInt32(ibvRecvWr.num_sge, 1, true);
    w.setBigUint64(256 + ibvSge.addr, BigInt((data.address as number) + 4096), true);
    w.setUint32(256 + ibvSge.length, 4096, true);
    w.setUint32(256 + ibvSge.lkey, mr.lkey, true);
    qp.postRecv(work.address);

    // Send WR at 512 (SGE at 768).
    w.setBigUint64(512 + ibvSendWr.wr_id, 9n, true);
    w.setBigUint64(512 + ibvSendWr.sg_list, BigInt(wbase + 768), true);
    w.setInt32(512 + ibvSendWr.num_sge, 1, true);
    w.setUint32(512 + ibvSendWr.opcode, ibv.WR_SEND, true);
    w.setUint32(512 + ibvSendWr.send_flags, ibv.SEND_SIGNALED, true);
    w.setBigUint64(512 + ibvSendWr.wr_ud_ah, BigInt(ah.address), true);
    w.setUint32(512 + ibvSendWr.wr_ud_remote_qpn, qp.qpn, true);
    w.setUint32(512 + ibvSendWr.wr_ud_remote_qkey, qkey, true);
    w.setBigUint64(768 + ibvSge.addr, BigInt(data.address as number), true);
    w.setUint32(768 + ibvSge.length, payload.length, true);
    w.setUint32(768 + ibvSge.lkey, mr.lkey, true);
    qp.postSend((wbase + 512) as Pointer);

    using wcMem = allocNativeBuffer(4096);
    const [sent] = pollUntil(scq, 1, wcMem);
    expect(Number(sent!.getBigUint64(ibvWc.wr_id, true))).toBe(9);
    const [got] = pollUntil(rcq, 1, wcMem);
    expect(Number(got!.getBigUint64(ibvWc.wr_id, true))).toBe(7);
    expect(got!.getUint32(ibvWc.opcode, true)).toBe(ibv.WC_RECV);
    expect(got!.getUint32(ibvWc.byte_len, true)).toBe(40 + payload.length);
    expect(got!.getUint32(ibvWc.src_qp, true)).toBe(qp.qpn);
    expect(got!.getUint32(ibvWc.wc_flags, true) & ibv.WC_GRH).toBe(ibv.WC_GRH);
    expect(new TextDecoder().decode(d.subarray(4096 + 40, 4096 + 40 + payload.length))).toBe("hermes over ud");

    // Closing the context closes everything under it, children first; a second close is a no-op.
    ctx.close();
    for (const h of [ah, mr, qp, scq, rcq, pd, ctx]) expect(h.closed).toBe(true);
    ctx.close();
    qp.close();
    expect(() => qp.postSend(work.address)).toThrow(/after close/);
    expect(() => pd.createAh({ port: 1 })).toThrow(/after close/);
  });

  test("RC: two connected QPs do an RDMA WRITE and a SEND", () => {
    using ctx = openDevice(device!);
    const gid = pickGid(ctx.gidEntries(1));
    const port = ctx.queryPort(1);
    const pd = ctx.allocPd();
    const cq = ctx.createCq(32);
    const a = pd.createQp({ type: "rc", sendCq: cq, recvCq: cq, sendWrMax: 8, recvWrMax: 8, signalAll: true });
    const b = pd.createQp({ type: "rc", sendCq: cq, recvCq: cq, sendWrMax: 8, recvWrMax: 8, signalAll: true });
    const av = { port: 1, dlid: port.lid, dgid: gid.gid, sgidIndex: gid.index };
    a.connectRc(1, 100, Math.min(port.activeMtu, ibv.MTU_1024), { qpn: b.qpn, psn: 200, addressVector: av });
    b.connectRc(1, 200, Math.min(port.activeMtu, ibv.MTU_1024), { qpn: a.qpn, psn: 100, addressVector: av });
    expect(a.state).toBe(ibv.QPS_RTS);

    using data = allocNativeBuffer(3 * 4096);
    using work = allocNativeBuffer(4096);
    const access = ibv.ACCESS_LOCAL_WRITE | ibv.ACCESS_REMOTE_WRITE | ibv.ACCESS_REMOTE_READ;
    const mr = pd.registerMemory(data.address, data.bytes, access);
    const d = new Uint8Array(data.buffer);
    for (let i = 0; i < 4096; i++) d[i] = (i * 7 + 3) & 0xff;
    const base = data.address as number;
    const w = new DataView(work.buffer);
    const wbase = work.address as number;
    const sge = (off: number, addr: number, len: number) => {
      w.setBigUint64(off + ibvSge.addr, BigInt(addr), true);
      w.setUint32(off + ibvSge.length, len, true);
      w.setUint32(off + ibvSge.lkey, mr.lkey, true);
    };
    // RDMA WRITE data[0..4096) -> data[4096..8192) through QP a.
    sge(256, base, 4096);
    w.setBigUint64(ibvSendWr.wr_id, 1n, true);
    w.setBigUint64(ibvSendWr.sg_list, BigInt(wbase + 256), true);
    w.setInt32(ibvSendWr.num_sge, 1, true);
    w.setUint32(ibvSendWr.opcode, ibv.WR_RDMA_WRITE, true);
    w.setUint32(ibvSendWr.send_flags, ibv.SEND_SIGNALED, true);
    w.setBigUint64(ibvSendWr.wr_rdma_remote_addr, BigInt(base + 4096), true);
    w.setUint32(ibvSendWr.wr_rdma_rkey, mr.rkey, true);
    a.postSend(work.address);
    using wcMem = allocNativeBuffer(4096);
    pollUntil(cq, 1, wcMem);
    for (let i = 0; i < 4096; i++) if (d[4096 + i] !== d[i]) throw new Error(`RDMA WRITE mismatch at ${i}`);

    // SEND 64 bytes from a to b's posted receive at data[8192..].
    sge(1024, base + 8192, 4096);
    w.setBigUint64(768 + ibvRecvWr.wr_id, 2n, true);
    w.setBigUint64(768 + ibvRecvWr.sg_list, BigInt(wbase + 1024), true);
    w.setInt32(768 + ibvRecvWr.num_sge, 1, true);
    b.postRecv((wbase + 768) as Pointer);
    sge(256, base + 100, 64);
    w.setUint32(ibvSendWr.opcode, ibv.WR_SEND, true);
    w.setBigUint64(ibvSendWr.wr_id, 3n, true);
    a.postSend(work.address);
    const wcs = pollUntil(cq, 2, wcMem);
    expect(wcs.map((x) => Number(x.getBigUint64(ibvWc.wr_id, true))).sort()).toEqual([2, 3]);
    expect([...d.subarray(8192, 8192 + 64)]).toEqual([...d.subarray(100, 164)]);

    // A CQ still used by QPs closes them first (ibv_destroy_cq would fail with EBUSY otherwise).
    cq.close();
    expect(a.closed && b.closed && cq.closed).toBe(true);
    expect(mr.closed).toBe(false);
    expect(pd.dependentCount).toBe(1);
  });

  test("verbs errors carry the call, errno and its text", () => {
    using ctx = openDevice(device!);
    const pd = ctx.allocPd();
    const cq = ctx.createCq(4);
    const qp = pd.createQp({ type: "ud", sendCq: cq, recvCq: cq, sendWrMax: 2, recvWrMax: 2 });
    // RESET -> RTS is not a legal transition.
    const e = catchError(() => qp.modify({ state: ibv.QPS_RTS, sqPsn: 0 })) as NativeError;
    expect(e).toBeInstanceOf(NativeError);
    expect(e.call).toBe("ibv_modify_qp");
    expect(e.errno).toBeGreaterThan(0);
    expect(e.message).toContain(`qp ${qp.qpn}`);
    // Registering memory that is not mapped fails in the kernel.
    const r = catchError(() => pd.registerMemory(4096 as Pointer, 4096)) as NativeError;
    expect(r).toBeInstanceOf(NativeError);
    expect(r.call).toBe("ibv_reg_mr");
    expect(r.errno).toBeGreaterThan(0);
    // A CQ larger than the device allows.
    const c = catchError(() => ctx.createCq(ctx.queryDevice().maxCqe + 1)) as NativeError;
    expect(c.call).toBe("ibv_create_cq");
    qp.close();
    expect(() => qp.modify({ state: ibv.QPS_INIT })).toThrow(/after close/);
  });
});
