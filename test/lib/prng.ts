// mulberry32: the one small seeded PRNG of the tests, so that randomized tests replay exactly from a seed.
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [0, n). */
export function below(rand: () => number, n: number): number {
  return Math.floor(rand() * n);
}

/** The seed of a test file: SEED=n replays another run's choices (the interleaving may still vary). */
export function testSeed(fallback: number): number {
  const text = process.env.SEED;
  return text === undefined ? fallback : Number(text) >>> 0;
}
