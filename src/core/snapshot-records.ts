// The byte format of state transfer: one record per key, back to back, little-endian. It is the
// format of the node's snapshot stream (src/node/snapshot-codec.ts), so a replica's chunks go from
// the source's slabs to the joiner's without a per-key object on either side.
//
//    0 u16 keyBytes
//    2 key (UTF-8)
//    . f64 version
//    . u32 writer       a WriterId (incarnation and node id, src/base/ids.ts)
//    . u8  flags        1: rmw, 2: committed (the source held the key Valid), 4: a value is present
//    . u32 valueBytes
//    . value
//
// Records are self-delimiting, so a reader takes whole records from a stream cut anywhere.

export const recordKeyBytesOffset = 0;
/** Offsets of the fields after the key, from the end of the key. */
export const recordWriterOffset = 8;
export const recordFlagsOffset = 12;
export const recordValueBytesOffset = 13;
export const recordValueOffset = 17;
/** Bytes of a record besides its key and value. */
export const recordFixedBytes = 2 + recordValueOffset;
export const recordFlagRmw = 1;
export const recordFlagCommitted = 2;
export const recordFlagValue = 4;
export const recordFlagsKnown = recordFlagRmw | recordFlagCommitted | recordFlagValue;

/** Bytes of one record. */
export function recordBytes(keyBytes: number, valueBytes: number): number {
  return recordFixedBytes + keyBytes + valueBytes;
}

/** Why records were refused (installSnapshotRecords returns it negated). */
export const enum RecordError {
  /** A key of 0 bytes, or longer than the store takes. */
  BadKeyLength = 1,
  /** A value longer than valueBytesMax. */
  BadValueLength = 2,
  /** A version that is not a safe integer >= 0, unknown flags, or a value length without the value flag. */
  BadFields = 3,
}

/**
 * Where the whole records of `bytes[at..end)` end, after checking each one's framing against the
 * given limits (the fields are checked where the records are installed). `counted.records` gets
 * how many whole records there are. Returns that end, or a negated RecordError.
 */
export function wholeRecordsEnd(
  bytes: Uint8Array,
  at: number,
  end: number,
  keyBytesMax: number,
  valueBytesMax: number,
  counted: { records: number },
): number {
  let p = at;
  let records = 0;
  while (end - p >= recordFixedBytes) {
    const keyBytes = bytes[p] | (bytes[p + 1] << 8);
    if (keyBytes === 0 || keyBytes > keyBytesMax) return -RecordError.BadKeyLength;
    if (end - p < recordFixedBytes + keyBytes) break;
    const v = p + recordFixedBytes - 4 + keyBytes;
    const valueBytes = (bytes[v] | (bytes[v + 1] << 8) | (bytes[v + 2] << 16) | (bytes[v + 3] << 24)) >>> 0;
    if (valueBytes > valueBytesMax) return -RecordError.BadValueLength;
    if (end - p < recordBytes(keyBytes, valueBytes)) break;
    p += recordBytes(keyBytes, valueBytes);
    records++;
  }
  counted.records = records;
  return p;
}
