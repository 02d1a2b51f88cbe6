// TigerBeetle-style assertions: a broken invariant throws and kills the worker; it is never swallowed.

export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

export function assert(condition: boolean, why: string): asserts condition {
  if (!condition) throw new AssertionError(why);
}
