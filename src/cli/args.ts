// A small, strict command-line flag parser shared by every subcommand.
//
// Strict on purpose: a misspelt flag that were silently ignored could turn `cas --etag` into an
// unconditional write, so an unknown flag, a repeated flag or a missing value is a usage error
// that names the offending token (exit 64, EX_USAGE).
//
// Accepted forms:
//   --name value   --name=value   -n value      (string flags)
//   --name         -n                           (boolean flags; `--name=x` is an error)
//   --                                          (everything after it is positional)
//   -                                           (positional: "read from stdin" by convention)
//   -5, -1.5                                    (positional: a negative number, not a flag)

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The exit code for a usage error (sysexits.h EX_USAGE). */
export const exitUsage = 64;

export type FlagKind = "string" | "boolean";

export interface FlagSpec {
  readonly kind: FlagKind;
  /** A one-letter alias used as `-x` (case-sensitive). */
  readonly short?: string;
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

export type ParsedFlags<S extends FlagSpecs> = {
  [K in keyof S]: S[K]["kind"] extends "boolean"
    ? boolean
    : S[K]["kind"] extends "string"
      ? string | undefined
      : string | boolean | undefined;
};

export interface ParsedArgs<S extends FlagSpecs> {
  flags: ParsedFlags<S>;
  positionals: string[];
}

/** Tokens are bounded so that a runaway script cannot make the parser build huge arrays. */
export const argvTokensMax = 4096;

const negativeNumber = /^-[0-9]/;

export function parseArgs<S extends FlagSpecs>(argv: readonly string[], specs: S): ParsedArgs<S> {
  if (argv.length > argvTokensMax) throw new UsageError(`too many arguments (${argv.length} > ${argvTokensMax})`);
  const byShort = new Map<string, string>();
  const flags: Record<string, string | boolean | undefined> = {};
  for (const name of Object.keys(specs)) {
    const spec = specs[name]!;
    flags[name] = spec.kind === "boolean" ? false : undefined;
    if (spec.short !== undefined) {
      if (spec.short.length !== 1 || byShort.has(spec.short)) throw new Error(`bad short alias for --${name}`);
      byShort.set(spec.short, name);
    }
  }
  const seen = new Set<string>();
  const positionals: string[] = [];
  let index = 0;
  while (index < argv.length) {
    const token = argv[index]!;
    index += 1;
    if (token === "--") {
      for (; index < argv.length; index += 1) positionals.push(argv[index]!);
      break;
    }
    if (token === "-" || !token.startsWith("-") || negativeNumber.test(token)) {
      positionals.push(token);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (token.startsWith("--")) {
      const eq = token.indexOf("=");
      name = eq < 0 ? token.slice(2) : token.slice(2, eq);
      inline = eq < 0 ? undefined : token.slice(eq + 1);
      if (!Object.hasOwn(specs, name)) throw new UsageError(`unknown flag: --${name}`);
    } else {
      const alias = byShort.get(token.slice(1));
      if (token.length !== 2 || alias === undefined) throw new UsageError(`unknown flag: ${token}`);
      name = alias;
    }
    const spec = specs[name]!;
    const shown = token.startsWith("--") ? `--${name}` : token;
    if (seen.has(name)) throw new UsageError(`flag ${shown} given more than once`);
    seen.add(name);
    if (spec.kind === "boolean") {
      if (inline !== undefined) throw new UsageError(`flag ${shown} takes no value`);
      flags[name] = true;
      continue;
    }
    if (inline !== undefined) {
      flags[name] = inline;
      continue;
    }
    const next = argv[index];
    // A value that looks like a flag is almost always a forgotten value ("--etag --endpoint x").
    if (next === undefined || (next.startsWith("--") && next !== "--"))
      throw new UsageError(`flag ${shown} needs a value`);
    flags[name] = next;
    index += 1;
  }
  return { flags: flags as ParsedFlags<S>, positionals };
}

/** Parse a decimal integer flag value within [min, max]; anything else is a usage error naming the flag. */
export function parseIntegerFlag(flag: string, text: string, min: number, max: number): number {
  if (!/^[+-]?[0-9]{1,16}$/.test(text)) throw new UsageError(`${flag} must be an integer, got ${JSON.stringify(text)}`);
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`${flag} must be between ${min} and ${max}, got ${text}`);
  }
  return value;
}

/** Check the number of positionals; `names` is used in the message ("expected KEY VALUE"). */
export function expectPositionals(positionals: readonly string[], min: number, max: number, names: string): void {
  if (positionals.length < min) throw new UsageError(`missing argument: expected ${names}`);
  if (positionals.length > max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[max])}: expected ${names}`);
  }
}
