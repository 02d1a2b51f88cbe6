// mulberry32: the one small seeded PRNG of the tests (the simulator included, through Prng below),
// so that randomized tests replay exactly from a seed.
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

/**
 * The same generator with the simulator's vocabulary (test/sim): every simulated choice comes
 * from one of these, so one seed replays one run exactly.
 */
export class Prng {
  readonly #next: () => number;

  constructor(seed: number) {
    this.#next = prng(seed);
  }

  /** Uniform in [0, 1), a multiple of 2^-32. */
  float(): number {
    return this.#next();
  }

  /** Uniform 32-bit unsigned integer. */
  u32(): number {
    return this.#next() * 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + this.#next() * (hi - lo);
  }

  chance(p: number): boolean {
    return this.#next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}
