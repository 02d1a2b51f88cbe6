// The one error type a command throws to stop the process with a single clear line (main.ts prints
// its message and exits 1), as opposed to bugs, which print a stack.

/** An error that ends the command with one clear line and exit code 1. */
export class FatalError extends Error {
  override name = "FatalError";
}
