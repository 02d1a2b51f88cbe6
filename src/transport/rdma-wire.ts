// The wire format of one RDMA transport datagram, shared by the transport (rdma.ts), which reads and
// writes it in registered memory, and the memory layout (rdma-layout.ts), which sizes slots for it.
//
// Little-endian:
//  0 u16 magic | 2 u8 version | 3 u8 flags | 4 u8 from | 5 u8 to | 6 u16 frameCount
//  8 u32 seqEnd: data: this datagram's sequence number + 1; control: the sender's next sequence
// 12 u32 ack: the sender has processed every datagram of the receiver's below this sequence
// 16 frames: u16 length, then the bytes, frameCount times; or, with flagFragment, one piece of a
//    frame: u16 index | u16 count | u32 frame bytes | the piece (frameCount: 1 on the last piece)

export const datagramMagic = 0x4852; // "HR"
export const datagramVersion = 1;

export const headerBytes = 16;
export const magicOffset = 0;
export const versionOffset = 2;
export const flagsOffset = 3;
export const fromOffset = 4;
export const toOffset = 5;
export const frameCountOffset = 6;
export const seqEndOffset = 8;
export const ackOffset = 12;

/** Each whole frame is preceded by its length, a u16: a whole frame is smaller than a datagram. */
export const frameLengthBytes = 2;

/** The datagram only carries acks and flags: no frames, no sequence number of its own. */
export const flagControl = 1;
/** The sender is out of credit: answer with an ack even if nothing new was processed. */
export const flagCreditRequest = 2;
/** The datagram carries one piece of a frame larger than a datagram. */
export const flagFragment = 4;

/** After the header of a piece: u16 index | u16 count | u32 frame bytes. */
export const fragmentHeaderBytes = 8;
export const pieceIndexOffset = headerBytes;
export const pieceCountOffset = headerBytes + 2;
export const pieceFrameBytesOffset = headerBytes + 4;

/** UD receive buffers start with 40 bytes for the GRH (RoCE v2 over IPv4: the IP header at 20). */
export const grhBytes = 40;
export const grhIpv4SourceOffset = 20 + 12;
export const grhSgidOffset = 8;

/** The largest frame that travels whole in one datagram of `datagramBytes`. */
export function wholeFrameBytesMax(datagramBytes: number): number {
  return datagramBytes - headerBytes - frameLengthBytes;
}

/** The largest piece of a fragmented frame in one datagram of `datagramBytes`. */
export function pieceBytesMax(datagramBytes: number): number {
  return datagramBytes - headerBytes - fragmentHeaderBytes;
}
