// Which shard of a node holds a key: the same answer on every node and in every thread, since
// worker i of every node replicates shard i (and the shard worker that receives an HTTP request
// forwards it to the one that holds its key).

/** FNV-1a over UTF-16 code units, modulo the shard count. */
export function shardOf(key: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}
