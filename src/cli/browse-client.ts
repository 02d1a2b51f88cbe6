// `hermes-kv ls PREFIX` and `hermes-kv watch PREFIX`: the client of GET /v1/kv?prefix= and GET
// /v1/watch, with the flags, output and exit codes of the other client commands (client.ts).
//
// ls pages through every key of the prefix (`after` = the last page's `next`). A key that was not
// Valid when its shard was read comes back in `pending`; ls then reads it with GET, which waits
// until it is Valid, so that the listing names every key it can. watch prints one line per event
// and exits 3 when the node ends the stream (overflow, unavailable) or goes away.

import { listLimitMax } from "../base/browse.ts";
import { UsageError, expectPositionals, parseArgs, parseIntegerFlag, type FlagSpecs } from "./args.ts";
import {
  ClientExit,
  call,
  commonFlags,
  commonHelp,
  contextOf,
  exitHelp,
  failure,
  processIo,
  type ClientIo,
  type Context,
} from "./client.ts";

export const browseCommands = ["ls", "watch"] as const;

const lsFlags = { ...commonFlags, values: { kind: "boolean" }, limit: { kind: "string" } } as const satisfies FlagSpecs;
const watchFlags = {
  ...commonFlags,
  key: { kind: "boolean" },
  "from-now": { kind: "boolean" },
  cursor: { kind: "string" },
} as const satisfies FlagSpecs;

/** Keys ls asks for per page. */
const lsPageKeys = 1000;

const lsHelp = `Usage: hermes-kv ls [PREFIX] [flags]

List the keys that start with PREFIX (all keys without it), in byte order of their UTF-8, one per
line: the key and its ETag, tab-separated (with --values, then the value). Pages through all of
them; keys that were being updated while listed are read one by one (GET waits for them).
The list is not a snapshot: each value shown was the key's value at some moment during the run.

Flags:
  --values           print each value after its ETag (as text if it is printable UTF-8, else base64:...)
  --limit N          print at most N keys (default: all)
${commonHelp}

${exitHelp}
`;

const watchHelp = `Usage: hermes-kv watch [PREFIX] [flags]

Print one line per change of a key that starts with PREFIX (all keys without it), as this node
commits or applies it: "put KEY ETAG VALUE" or "delete KEY ETAG" (tab-separated), first for every
current key, then "synced", then live. Values are shown as by ls --values. Intermediate values of a
key may be skipped (a replica may never hold a value that a later write overtook); a key's ETags
never go back. Runs until interrupted; exits 3 if the node ends the stream (it fell behind:
overflow; or it stopped serving: unavailable) or cannot be reached.

Flags:
  --key              watch exactly the key PREFIX, not every key starting with it
  --from-now         skip the current keys: print only changes from now on
  --cursor ID        resume after the event with this id (the node resends the current keys)
${commonHelp}

${exitHelp}
`;

const printable = /^[^\u0000-\u0008\u000b-\u001f\u007f]*$/;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A value for a terminal: its text if it is printable UTF-8 without tabs or newlines, else base64. */
function showValue(base64: string): string {
  const bytes = Buffer.from(base64, "base64");
  try {
    const text = decoder.decode(bytes);
    if (printable.test(text) && !text.includes("\t") && !text.includes("\n") && !text.startsWith("base64:"))
      return text;
  } catch {
    // not UTF-8
  }
  return `base64:${base64}`;
}

/** Run `hermes-kv ls|watch ...` (argv starts with the command's name). Returns the exit code. */
export async function runBrowseCommand(argv: readonly string[], io: ClientIo = processIo()): Promise<number> {
  const name = argv[0] as (typeof browseCommands)[number];
  const help = name === "ls" ? lsHelp : watchHelp;
  try {
    const parsed = parseArgs(argv.slice(1), name === "ls" ? lsFlags : watchFlags);
    const positionals = parsed.positionals;
    const flags = parsed.flags as Record<string, string | boolean | undefined>;
    if (flags.help === true) {
      await io.stdout(help);
      return ClientExit.ok;
    }
    expectPositionals(positionals, 0, 1, "[PREFIX]");
    const context = await contextOf(flags, io);
    const prefix = positionals[0] ?? "";
    if (name === "ls") {
      const limit =
        typeof flags.limit === "string"
          ? parseIntegerFlag("--limit", flags.limit, 1, Number.MAX_SAFE_INTEGER)
          : Infinity;
      return await list(context, prefix, flags.values === true, limit);
    }
    if (flags.key === true && prefix === "") throw new UsageError("--key needs a KEY");
    const cursor = typeof flags.cursor === "string" ? flags.cursor : null;
    return await watch(context, prefix, flags.key === true, flags["from-now"] === true, cursor);
  } catch (error) {
    if (error instanceof UsageError) {
      await io.stderr(`Error: ${error.message}\nRun 'hermes-kv ${name} --help' for usage.\n`);
      return ClientExit.usage;
    }
    throw error;
  }
}

interface ListBody {
  keys: { key: string; etag: string; value?: string }[];
  more: boolean;
  next?: string;
  pending?: string[];
}

async function list(context: Context, prefix: string, values: boolean, limit: number): Promise<number> {
  let after: string | null = null;
  let printed = 0;
  for (;;) {
    const pageKeys = Math.min(lsPageKeys, listLimitMax, limit - printed);
    let path = `/v1/kv?prefix=${encodeURIComponent(prefix)}&limit=${pageKeys}${values ? "&values=1" : ""}`;
    if (after !== null) path += `&after=${encodeURIComponent(after)}`;
    const response = await call(context, "GET", path, undefined, false);
    if (typeof response === "number") return response;
    if (response.status !== 200) return failure(context, response);
    const body = (await response.json()) as ListBody;
    // Listed keys and pending ones, merged in byte order, so the output stays sorted.
    const lines: { key: string; line: string | null }[] = body.keys.map((k) => ({
      key: k.key,
      line: values ? `${k.key}\t${k.etag}\t${showValue(k.value ?? "")}` : `${k.key}\t${k.etag}`,
    }));
    for (const key of body.pending ?? []) lines.push({ key, line: null });
    lines.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    for (const entry of lines) {
      if (printed >= limit) return ClientExit.ok;
      let line = entry.line;
      if (line === null) {
        const read = await call(context, "GET", `/v1/kv/${encodeURIComponent(entry.key)}`, undefined, false);
        if (typeof read === "number") return read;
        if (read.status === 404) {
          await read.body?.cancel();
          continue; // deleted meanwhile
        }
        if (read.status !== 200) return failure(context, read);
        const value = Buffer.from(await read.arrayBuffer()).toString("base64");
        const etag = read.headers.get("etag") ?? "";
        line = values ? `${entry.key}\t${etag}\t${showValue(value)}` : `${entry.key}\t${etag}`;
      }
      await context.io.stdout(`${line}\n`);
      printed++;
    }
    if (!body.more || printed >= limit) return ClientExit.ok;
    after = body.next!;
  }
}

async function watch(
  context: Context,
  prefix: string,
  exact: boolean,
  fromNow: boolean,
  cursor: string | null,
): Promise<number> {
  let path = `/v1/watch?${exact ? "key" : "prefix"}=${encodeURIComponent(prefix)}${fromNow ? "&from=now" : ""}`;
  if (cursor !== null) path += `&cursor=${encodeURIComponent(cursor)}`;
  let response: Response;
  try {
    response = await fetch(context.endpoint + path, {
      headers: context.credentials.headers,
      ...(context.credentials.tls === undefined ? {} : { tls: context.credentials.tls }),
    });
  } catch (error) {
    await context.io.stderr(`Error: cannot reach ${context.endpoint}: ${(error as Error).message}\n`);
    return ClientExit.unavailable;
  }
  if (response.status !== 200) return failure(context, response);
  const text = new TextDecoder();
  let buffered = "";
  try {
    for await (const chunk of response.body!) {
      buffered += text.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const exit = await printEvent(context, block);
        if (exit !== null) return exit;
      }
    }
  } catch (error) {
    await context.io.stderr(`Error: the stream from ${context.endpoint} broke: ${(error as Error).message}\n`);
    return ClientExit.unavailable;
  }
  await context.io.stderr(`Error: ${context.endpoint} closed the stream\n`);
  return ClientExit.unavailable;
}

/** Print one SSE block; an exit code when the stream ends with it. */
async function printEvent(context: Context, block: string): Promise<number | null> {
  let event = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data += value;
  }
  if (data === "") return null; // a heartbeat, or the retry line
  const body = JSON.parse(data) as { key?: string; etag?: string; value?: string; reason?: string };
  switch (event) {
    case "put":
      await context.io.stdout(`put\t${body.key}\t${body.etag}\t${showValue(body.value ?? "")}\n`);
      return null;
    case "delete":
      await context.io.stdout(`delete\t${body.key}\t${body.etag}\n`);
      return null;
    case "synced":
      await context.io.stdout("synced\n");
      return null;
    case "overflow":
    case "unavailable":
      await context.io.stdout(`${event}\t${body.reason ?? ""}\n`);
      await context.io.stderr(`Error: the node ended the stream (${event}: ${body.reason ?? ""})\n`);
      return ClientExit.unavailable;
    default:
      return null;
  }
}
