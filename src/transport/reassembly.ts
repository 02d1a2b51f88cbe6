// Frames larger than one RDMA datagram: cut into pieces on send, put back together on receive.
//
// A UD datagram holds one path MTU, while the node's frames may be far larger. The sender cuts such
// a frame into numbered pieces, each a datagram of its own, and sends all of them or none. One
// peer's datagrams arrive in order on one path, so the receiver keeps one frame in progress per
// peer and needs no reordering: a piece that is not the next one expected means a piece was lost,
// and losing any piece loses the frame, which the protocol tolerates like any loss. Every lost frame
// is counted once, when the loss is first seen; its remaining pieces are then discarded.
//
// "The next one expected" is decided by the datagram's sequence number as well as the piece index:
// the pieces of a frame take consecutive sequence numbers, and without that check the head of one
// frame and the tail of the next, of the same size, could be spliced into one frame when the
// pieces between them were lost.

import { assert } from "../base/assert.ts";

const u32 = (x: number) => x >>> 0;

/** The piece index and count are u16 on the wire. */
export const piecesPerFrameMax = 0xffff;

/** How many pieces a frame of `frameBytes` takes. */
export function pieceCount(frameBytes: number, pieceBytesMax: number): number {
  assert(Number.isInteger(frameBytes) && frameBytes >= 1, "a frame has at least one byte");
  assert(Number.isInteger(pieceBytesMax) && pieceBytesMax >= 1, "a piece holds at least one byte");
  const count = Math.ceil(frameBytes / pieceBytesMax);
  assert(count <= piecesPerFrameMax, "the piece count fits its u16 on the wire");
  return count;
}

/** Piece `index` of `frame`: a view, every piece full but the last. */
export function pieceOf(frame: Uint8Array, index: number, pieceBytesMax: number): Uint8Array {
  const start = index * pieceBytesMax;
  assert(Number.isInteger(index) && index >= 0 && start < frame.length, "a piece index lies inside the frame");
  return frame.subarray(start, Math.min(start + pieceBytesMax, frame.length));
}

/** What reassembly counts; the RDMA transport passes its stats object, which has these fields. */
export interface ReassemblyCounts {
  /** Fragmented frames lost to a missing, dropped or malformed piece. */
  fragmentLosses: number;
  /** Every frame lost here is also counted as dropped on receive. */
  framesDropped: number;
  /** Pieces whose header or size cannot be right. */
  malformedDrops: number;
  framesReassembled: number;
}

/** Not expecting any piece: the next frame starts with piece 0. */
const idle = -1;
/** The frame in progress is lost: its remaining pieces are skipped without counting it again. */
const discarding = -2;

/** One peer's frame in progress. */
export class Reassembly {
  readonly #buffer: Uint8Array;
  readonly #counts: ReassemblyCounts;
  /** The index of the next piece expected, or idle, or discarding. */
  #expecting = idle;
  #pieceCount = 0;
  #frameBytes = 0;
  #filled = 0;
  /** The sequence number of the datagram that carried piece 0. */
  #firstSeq = 0;

  /** Allocates the buffer for one largest frame (connecting a peer is the control path). */
  constructor(frameBytesMax: number, counts: ReassemblyCounts) {
    assert(Number.isInteger(frameBytesMax) && frameBytesMax >= 0, "a reassembly buffer size is a byte count");
    this.#buffer = new Uint8Array(frameBytesMax);
    this.#counts = counts;
  }

  /** A frame is partly received. */
  get inProgress(): boolean {
    return this.#expecting >= 0;
  }

  /**
   * Piece `index` of `count` of a frame of `frameBytes` bytes, carried by the datagram numbered
   * `seq`. Returns the whole frame when this piece completes it (a view valid until the next
   * call), else null. `dropped`: a test's drop rule removes this piece, which is then lost exactly
   * as if the network had lost it.
   */
  accept(
    seq: number,
    index: number,
    count: number,
    frameBytes: number,
    piece: Uint8Array,
    dropped: boolean,
  ): Uint8Array | null {
    const last = index === count - 1;
    if (index === 0) {
      // A new frame; one still incomplete lost its last pieces.
      if (this.#expecting >= 0) this.#lose(idle);
      if (frameBytes > this.#buffer.length || count < 2 || piece.length === 0 || piece.length > frameBytes) {
        this.#counts.malformedDrops++;
        this.#lose(discarding);
        return null;
      }
      if (dropped) {
        this.#lose(discarding);
        return null;
      }
      this.#expecting = 0;
      this.#pieceCount = count;
      this.#frameBytes = frameBytes;
      this.#filled = 0;
      this.#firstSeq = seq;
    } else if (
      dropped ||
      index !== this.#expecting ||
      u32(seq - this.#firstSeq) !== index ||
      count !== this.#pieceCount ||
      frameBytes !== this.#frameBytes
    ) {
      // This piece, or an earlier one of its frame, is lost. (index !== expecting also covers
      // idle and discarding, which are negative.)
      if (this.#expecting !== discarding) this.#lose(discarding);
      if (last) this.#expecting = idle;
      return null;
    }
    const filled = this.#filled + piece.length;
    if (piece.length === 0 || filled > this.#frameBytes || (last && filled !== this.#frameBytes)) {
      this.#counts.malformedDrops++;
      this.#lose(last ? idle : discarding);
      return null;
    }
    this.#buffer.set(piece, this.#filled);
    this.#filled = filled;
    this.#expecting++;
    assert(this.#expecting < this.#pieceCount || last, "only the last piece completes a frame");
    if (!last) return null;
    this.#expecting = idle;
    this.#counts.framesReassembled++;
    return this.#buffer.subarray(0, this.#frameBytes);
  }

  /** Counts the frame in progress (or whose first piece went missing) as lost; moves to `next`. */
  #lose(next: typeof idle | typeof discarding): void {
    this.#counts.fragmentLosses++;
    this.#counts.framesDropped++;
    this.#expecting = next;
  }
}
