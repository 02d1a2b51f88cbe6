// The bounded queue between a transport's receive callbacks and `poll`.
//
// Bun hands received bytes to callbacks that run on the event loop, while the worker consumes
// frames when it calls poll(). Frames are copied into one pre-allocated slab on arrival (so the
// transport does not depend on how long Bun keeps its buffers, and memory is bounded by bytes, not
// by whatever Bun allocated), and poll() hands out views of the slab. poll() drains everything, so the
// slab is a bump allocator reset on every poll: no wrap-around, no fragmentation.
// Two named limits: framesMax entries and bytesMax slab bytes. A frame that fits in neither is refused
// (the transport drops and counts it).

import { assert } from "../base/assert.ts";
import type { NodeId } from "../base/ids.ts";

export class RecvQueue<Tag> {
  readonly framesMax: number;
  readonly bytesMax: number;
  #slab: Uint8Array;
  readonly #from: Int32Array;
  readonly #offset: Int32Array;
  readonly #length: Int32Array;
  /** Per-entry transport data (TCP: the connection the frame came on, to return its credit). */
  readonly #tag: (Tag | null)[];
  #count = 0;
  #top = 0;
  #draining = false;
  /** The pending whenNonEmpty() promise and its resolver, if someone waits. */
  #waiting: Promise<void> | null = null;
  #wake: (() => void) | null = null;

  constructor(framesMax: number, bytesMax: number) {
    if (!(Number.isInteger(framesMax) && framesMax >= 1)) throw new RangeError(`framesMax ${framesMax}`);
    if (!(Number.isInteger(bytesMax) && bytesMax >= 1)) throw new RangeError(`bytesMax ${bytesMax}`);
    this.framesMax = framesMax;
    this.bytesMax = bytesMax;
    this.#slab = new Uint8Array(bytesMax);
    this.#from = new Int32Array(framesMax);
    this.#offset = new Int32Array(framesMax);
    this.#length = new Int32Array(framesMax);
    this.#tag = new Array<Tag | null>(framesMax).fill(null);
  }

  get count(): number {
    return this.#count;
  }

  /**
   * Copy `src[start, end)` in as one frame from `from`. False (nothing kept) when full.
   * `src` is a Buffer so that Buffer.copy moves the bytes without allocating a view.
   */
  push(from: NodeId, tag: Tag | null, src: Buffer, start: number, end: number): boolean {
    const length = end - start;
    assert(length > 0 && start >= 0 && end <= src.length, "a pushed frame is a non-empty range of its buffer");
    assert(!this.#draining, "receive callbacks never run inside poll's drain");
    if (this.#count === this.framesMax || this.#top + length > this.bytesMax) return false;
    const i = this.#count;
    const copied = src.copy(this.#slab, this.#top, start, end);
    assert(copied === length, "Buffer.copy copies the whole range into the room checked above");
    this.#from[i] = from;
    this.#offset[i] = this.#top;
    this.#length[i] = length;
    this.#tag[i] = tag;
    this.#top += length;
    this.#count = i + 1;
    if (this.#wake !== null) this.#wakeUp();
    return true;
  }

  /**
   * Resolves once a frame is queued (at once if one already is), so that an idle worker can sleep
   * in the event loop instead of spinning on poll(). One promise is shared by all callers.
   */
  whenNonEmpty(): Promise<void> {
    if (this.#count > 0) return Promise.resolve();
    this.#waiting ??= new Promise<void>((resolve) => (this.#wake = resolve));
    return this.#waiting;
  }

  #wakeUp(): void {
    const wake = this.#wake!;
    this.#wake = null;
    this.#waiting = null;
    wake();
  }

  /**
   * Hand every queued frame to `visit` (a view valid only during the call), then empty the queue.
   * Not re-entrant: a visit that calls drain again is a bug and throws.
   */
  drain(visit: (from: NodeId, frame: Uint8Array, tag: Tag | null) => void): number {
    assert(!this.#draining, "drain is not re-entrant (poll called from a frame handler?)");
    const n = this.#count;
    if (n === 0) return 0;
    this.#draining = true;
    try {
      for (let i = 0; i < n; i++) {
        const off = this.#offset[i]!;
        visit(this.#from[i]!, this.#slab.subarray(off, off + this.#length[i]!), this.#tag[i]!);
      }
    } finally {
      // Emptied even if a handler threw: a throwing handler is fatal to the worker anyway, and a
      // queue left half-drained would hand out the same frames twice.
      for (let i = 0; i < n; i++) this.#tag[i] = null;
      this.#count = 0;
      this.#top = 0;
      this.#draining = false;
    }
    return n;
  }

  /** Drop everything queued and wake any waiter (the owner is closing); returns how many were dropped. */
  clear(): number {
    const n = this.#count;
    for (let i = 0; i < n; i++) this.#tag[i] = null;
    this.#count = 0;
    this.#top = 0;
    if (this.#wake !== null) this.#wakeUp();
    return n;
  }
}
