// `hermes-kv get|put|delete|cas|incr|batch`: a small HTTP client of one node, in the style of etcdctl.
// Values go to stdout, errors to stderr as `Error: ...`, and the exit code says what happened, so
// that scripts can branch on it without parsing text:
//   0 ok, 1 not found, 2 precondition failed, 3 unavailable / busy / timeout / incr aborted /
//   outcome unknown (retrying may help), 4 refused for another reason (not a number, store full, server error),
//   64 usage (bad flags or arguments, or input the server rejected as invalid or too large).

import { batchBodyBytesMax, batchOpsMax } from "../http/routes-batch.ts";
import { batchBinaryType } from "../http/batch-binary.ts";
import { decodeBinaryResults, encodeBinaryBatch } from "../http/batch-binary-client.ts";
import { binaryOpsOfJson, jsonResultOf } from "./batch-binary-file.ts";
import { UsageError, exitUsage, expectPositionals, parseArgs, parseIntegerFlag, type FlagSpecs } from "./args.ts";
import {
  clientCredentialFlags,
  clientCredentialHelp,
  loadClientCredentials,
  type ClientCredentials,
} from "./client-credentials.ts";

export const ClientExit = {
  ok: 0,
  notFound: 1,
  preconditionFailed: 2,
  unavailable: 3,
  refused: 4,
  usage: exitUsage,
} as const;

/** The commands on one KEY. */
export const clientCommands = ["get", "put", "delete", "cas", "incr"] as const;
/** `hermes-kv batch [FILE|-]`: a client command too, but on many keys (POST /v1/batch), so not in clientCommands. */
export const batchCommand = "batch";
export type ClientCommand = (typeof clientCommands)[number] | typeof batchCommand;
const allCommands: readonly string[] = [...clientCommands, batchCommand];

export interface ClientIo {
  stdout(data: string | Uint8Array): void | Promise<void>;
  stderr(text: string): void | Promise<void>;
  /** All of stdin, or null when it is longer than bytesMax. */
  readStdin(bytesMax: number): Promise<Uint8Array | null>;
  env: Readonly<Record<string, string | undefined>>;
}

export const defaultEndpoint = "http://127.0.0.1:8080";
export const endpointEnv = "HERMES_KV_ENDPOINT";
/** Longer than a node's op timeout (5 s by default), so that the node answers 504 before we give up. */
export const defaultTimeoutMs = 10_000;
export const timeoutMsMax = 3_600_000;
/** A value read from stdin (or a batch from a file) is held in memory; nodes accept far less. */
export const stdinBytesMax = 16 * 1024 * 1024;
/** Failed ops of a batch reported on stderr one by one; the rest are counted (stdout has them all). */
export const batchFailuresShownMax = 10;

export const commonFlags = {
  endpoint: { kind: "string" },
  "timeout-ms": { kind: "string" },
  ...clientCredentialFlags,
  help: { kind: "boolean", short: "h" },
} as const satisfies FlagSpecs;

export const commonHelp = `  --endpoint URL     the node to talk to (default: $${endpointEnv}, else ${defaultEndpoint})
  --timeout-ms N     give up waiting for the node after N milliseconds (default ${defaultTimeoutMs})
${clientCredentialHelp}
  -h, --help         show this help`;

export const exitHelp = `Exit codes: 0 ok, 1 not found, 2 precondition failed, 3 unavailable, busy, timed out, incr aborted
or outcome unknown (retrying may help), 4 refused (not a number, store full, server error, no or a
wrong token, a role too weak), 64 usage.`;

interface CommandDef {
  flags: FlagSpecs;
  help: string;
  run(context: Context, flags: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number>;
}

export interface Context {
  io: ClientIo;
  endpoint: string;
  timeoutMs: number;
  credentials: ClientCredentials;
}

const commands: Record<ClientCommand, CommandDef> = {
  get: {
    flags: { ...commonFlags, raw: { kind: "boolean" }, "print-etag": { kind: "boolean" } },
    help: `Usage: hermes-kv get KEY [flags]

Read KEY and print its value followed by a newline.

Flags:
  --raw              print the value's bytes exactly, with no newline added
  --print-etag       print the key's ETag (what cas expects) on a line before the value
${commonHelp}

${exitHelp}
`,
    async run(context, flags, positionals) {
      expectPositionals(positionals, 1, 1, "KEY");
      const response = await call(context, "GET", keyPath(positionals[0]!), undefined, false);
      if (typeof response === "number") return response;
      if (response.status !== 200) return failure(context, response);
      const value = new Uint8Array(await response.arrayBuffer());
      if (flags["print-etag"] === true) await context.io.stdout(`${response.headers.get("etag") ?? ""}\n`);
      await context.io.stdout(value);
      if (flags.raw !== true) await context.io.stdout("\n");
      return ClientExit.ok;
    },
  },
  put: {
    flags: { ...commonFlags, "if-absent": { kind: "boolean" } },
    help: `Usage: hermes-kv put KEY VALUE [flags]
       hermes-kv put KEY - [flags]      (the value is read from stdin, byte for byte)

Write VALUE to KEY. Prints OK and the new ETag, each on its own line.

Flags:
  --if-absent        write only if KEY is absent (If-None-Match: *); exit 2 if it exists
${commonHelp}

${exitHelp}
`,
    async run(context, flags, positionals) {
      expectPositionals(positionals, 2, 2, "KEY VALUE (or - for stdin)");
      const value = await valueOf(context, positionals[1]!);
      const headers: Record<string, string> = flags["if-absent"] === true ? { "if-none-match": "*" } : {};
      return printUpdate(context, await call(context, "PUT", keyPath(positionals[0]!), { body: value, headers }, true));
    },
  },
  delete: {
    flags: commonFlags,
    help: `Usage: hermes-kv delete KEY [flags]

Delete KEY (a write of a tombstone: it succeeds whether or not KEY exists). Prints OK and the new
ETag, each on its own line.

Flags:
${commonHelp}

${exitHelp}
`,
    async run(context, _flags, positionals) {
      expectPositionals(positionals, 1, 1, "KEY");
      return printUpdate(context, await call(context, "DELETE", keyPath(positionals[0]!), undefined, true));
    },
  },
  cas: {
    flags: { ...commonFlags, etag: { kind: "string" } },
    help: `Usage: hermes-kv cas KEY VALUE --etag ETAG [flags]
       hermes-kv cas KEY - --etag ETAG [flags]      (the value is read from stdin)

Compare-and-set: write VALUE to KEY only if KEY's current ETag is ETAG (If-Match). ETAG is what
put, cas or delete printed, or get --print-etag, with or without its quotes ("3.1" or 3.1).
Prints OK and the new ETag on success; exit 2 and the current ETag on stderr if it differs.

Flags:
  --etag ETAG        the expected ETag (required)
${commonHelp}

${exitHelp}
`,
    async run(context, flags, positionals) {
      expectPositionals(positionals, 2, 2, "KEY VALUE (or - for stdin)");
      const etag = flags.etag;
      if (typeof etag !== "string") throw new UsageError("cas needs --etag ETAG");
      if (etag === "") throw new UsageError("--etag is empty");
      // Shells strip quotes, so accept 3.1 as well as "3.1"; the server wants the quoted form.
      const quoted = etag.startsWith('"') ? etag : `"${etag}"`;
      const value = await valueOf(context, positionals[1]!);
      const init = { body: value, headers: { "if-match": quoted } };
      return printUpdate(context, await call(context, "PUT", keyPath(positionals[0]!), init, true));
    },
  },
  incr: {
    flags: { ...commonFlags, by: { kind: "string" } },
    help: `Usage: hermes-kv incr KEY [BY] [flags]

Add BY (default 1; may be negative) to KEY's value, a decimal integer (an absent key counts as 0),
atomically. Prints the new value.

Flags:
  --by N             the amount, instead of the BY argument
${commonHelp}

${exitHelp}
`,
    async run(context, flags, positionals) {
      expectPositionals(positionals, 1, 2, "KEY [BY]");
      const byArgument = positionals[1];
      const byFlag = flags.by;
      if (byArgument !== undefined && typeof byFlag === "string")
        throw new UsageError("give BY as an argument or as --by, not both");
      const byText = byArgument ?? (typeof byFlag === "string" ? byFlag : "1");
      const by = parseIntegerFlag("BY", byText, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
      const response = await call(context, "POST", `${keyPath(positionals[0]!)}/incr?by=${by}`, undefined, true);
      if (typeof response === "number") return response;
      if (response.status !== 200) return failure(context, response);
      const body = (await response.json()) as { value?: unknown };
      if (typeof body.value !== "number") {
        await context.io.stderr("Error: the node's answer has no value\n");
        return ClientExit.refused;
      }
      await context.io.stdout(`${body.value}\n`);
      return ClientExit.ok;
    },
  },
  batch: {
    flags: { ...commonFlags, binary: { kind: "boolean" } },
    help: `Usage: hermes-kv batch [FILE|-] [--binary] [flags]

Send many independent ops to the node in one request (POST /v1/batch). FILE holds the request as
JSON; with - or no FILE it is read from stdin. Values are base64 (they may be any bytes):

  {"ops":[{"op":"put","key":"k","value":"aGVsbG8="},
          {"op":"get","key":"k"},
          {"op":"cas","key":"k","etag":"\\"2.1\\"","value":"Ynll"},
          {"op":"create","key":"new","value":""},
          {"op":"delete","key":"old"},
          {"op":"incr","key":"n","by":3}]}

It is not a transaction: the ops run concurrently, in any order, and each succeeds or fails on its
own. The node checks the whole batch before running any op: a malformed or oversize batch (more
than ${batchOpsMax} ops or ${batchBodyBytesMax} bytes) runs nothing (exit 64).

Prints the node's answer on stdout: {"results":[...]} with one result per line, in the order of
the ops, each with the status its op would have had alone (200, 404, 412, 409, 429, 503, 504...),
a base64 "value" for get, a number for incr, the "etag", and an "error" when it failed. Each op
that did not succeed is also named on stderr.

Flags:
  --binary           send the batch in the binary format (${batchBinaryType}, README
                     "Batches"), converted from the JSON above, and print its answer as JSON: the
                     same output, with raw value bytes on the wire instead of base64
${commonHelp}

Exit codes: 0 if every op answered 200 (a get of an absent key answers 404); otherwise the code its
own command would give for the first op that did not: 1 not found, 2 precondition failed,
3 unavailable, busy, timed out, incr aborted or outcome unknown (retrying may help), 4 refused
(not a number, store full). Also 3 if the node could not be reached, and 64 usage (bad flags, an
unreadable FILE, or a batch the node refused as invalid or too large).
`,
    async run(context, flags, positionals) {
      expectPositionals(positionals, 0, 1, "[FILE|-]");
      const source = positionals[0] ?? "-";
      const body =
        source === "-" ? await context.io.readStdin(stdinBytesMax) : await readFileBounded(source, stdinBytesMax);
      if (body === null)
        throw new UsageError(`the batch on ${source === "-" ? "stdin" : source} is longer than ${stdinBytesMax} bytes`);
      if (flags.binary === true) return sendBinaryBatch(context, body, source === "-" ? "stdin" : source);
      const init = { body, headers: { "content-type": "application/json" } };
      const response = await call(context, "POST", "/v1/batch", init, true);
      if (typeof response === "number") return response;
      if (response.status !== 200) return failure(context, response);
      return printBatch(context, await response.text());
    },
  },
};

/** Run one client subcommand; argv starts with its name (["get", "k", "--endpoint", url]). Returns the exit code. */
export async function runClientCommand(argv: readonly string[], io: ClientIo = processIo()): Promise<number> {
  const name = argv[0];
  if (name === undefined || !allCommands.includes(name)) {
    await io.stderr(
      `Error: unknown client command ${JSON.stringify(name ?? "")}; expected one of ${allCommands.join(", ")}\n`,
    );
    return ClientExit.usage;
  }
  const command = commands[name as ClientCommand];
  try {
    const { flags, positionals } = parseArgs(argv.slice(1), command.flags);
    if (flags.help === true) {
      await io.stdout(command.help);
      return ClientExit.ok;
    }
    return await command.run(await contextOf(flags, io), flags, positionals);
  } catch (error) {
    if (error instanceof UsageError) {
      await io.stderr(`Error: ${error.message}\nRun 'hermes-kv ${name} --help' for usage.\n`);
      return ClientExit.usage;
    }
    throw error;
  }
}

/** What every client command needs from the common flags (commonFlags) and the environment. */
export async function contextOf(
  flags: Readonly<Record<string, string | boolean | undefined>>,
  io: ClientIo,
): Promise<Context> {
  const endpoint =
    typeof flags.endpoint === "string"
      ? parseEndpoint("--endpoint", flags.endpoint)
      : parseEndpoint(`$${endpointEnv}`, io.env[endpointEnv] ?? defaultEndpoint);
  return {
    io,
    endpoint,
    credentials: await loadClientCredentials(flags, io.env, endpoint),
    timeoutMs:
      typeof flags["timeout-ms"] === "string"
        ? parseIntegerFlag("--timeout-ms", flags["timeout-ms"], 1, timeoutMsMax)
        : defaultTimeoutMs,
  };
}

/** `source` names where the text came from (the flag or the environment variable) for the message. */
export function parseEndpoint(source: string, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${source} must be a URL such as ${defaultEndpoint}, got ${JSON.stringify(text)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new UsageError(`${source} must be http:// or https://, got ${text}`);
  if (url.search !== "" || url.hash !== "")
    throw new UsageError(`${source} must not have a query or fragment, got ${text}`);
  return url.href.replace(/\/+$/, "");
}

/**
 * The URL path of a key. Every reserved character is escaped, "/" included, so that the node sees
 * the key exactly. "." and ".." cannot be sent: URL parsers remove such path segments.
 */
function keyPath(key: string): string {
  if (key === "") throw new UsageError("KEY is empty");
  if (key === "." || key === "..")
    throw new UsageError(`KEY cannot be ${JSON.stringify(key)}: HTTP clients remove such path segments`);
  return `/v1/kv/${encodeURIComponent(key)}`;
}

const encoder = new TextEncoder();

async function valueOf(context: Context, argument: string): Promise<Uint8Array> {
  if (argument !== "-") return encoder.encode(argument);
  const value = await context.io.readStdin(stdinBytesMax);
  if (value === null) throw new UsageError(`the value on stdin is longer than ${stdinBytesMax} bytes`);
  return value;
}

/** A response, or the exit code after a transport failure has been reported. */
export async function call(
  context: Context,
  method: string,
  path: string,
  init: { body?: Uint8Array; headers?: Record<string, string> } | undefined,
  isUpdate: boolean,
): Promise<Response | number> {
  const url = context.endpoint + path;
  try {
    return await fetch(url, {
      method,
      body: init?.body,
      headers: { ...init?.headers, ...context.credentials.headers },
      signal: AbortSignal.timeout(context.timeoutMs),
      ...(context.credentials.tls === undefined ? {} : { tls: context.credentials.tls }),
    });
  } catch (error) {
    const err = error as { name?: string; code?: string; message?: string };
    const refused = err.code === "ConnectionRefused" || err.code === "ECONNREFUSED";
    let message: string;
    if (err.name === "TimeoutError") message = `no answer from ${context.endpoint} within ${context.timeoutMs} ms`;
    else message = `cannot reach ${context.endpoint}: ${err.message ?? String(error)}`;
    // Unless the connection was refused, the request may have reached the node.
    if (isUpdate && !refused) message += "; the update may or may not have taken effect";
    await context.io.stderr(`Error: ${message}\n`);
    return ClientExit.unavailable;
  }
}

async function printUpdate(context: Context, response: Response | number): Promise<number> {
  if (typeof response === "number") return response;
  if (response.status !== 200) return failure(context, response);
  await response.body?.cancel();
  await context.io.stdout(`OK\n${response.headers.get("etag") ?? ""}\n`);
  return ClientExit.ok;
}

/** Report a non-200 answer on stderr and choose the exit code from the error code. */
export async function failure(context: Context, response: Response): Promise<number> {
  let code = "";
  let message = `HTTP ${response.status} from ${context.endpoint}`;
  const text = await response.text();
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    // Not our JSON (a proxy, or not a hermes-kv node): the status line is all we know.
  }
  await context.io.stderr(`Error: ${message}\n`);
  return exitCodeOf(code, response.status);
}

/** The exit code for an error answer: by its error code, else by its HTTP status. */
function exitCodeOf(code: string, status: number): number {
  switch (code) {
    case "not_found":
      return ClientExit.notFound;
    case "precondition_failed":
      return ClientExit.preconditionFailed;
    case "unavailable":
    case "busy":
    case "timeout":
    case "outcome_unknown":
    case "aborted":
      return ClientExit.unavailable;
    case "invalid_input":
    case "too_large":
      return ClientExit.usage;
    default:
      // A 5xx without our body (a proxy's 502/503/504) is also worth a retry.
      return status >= 502 && status <= 504 ? ClientExit.unavailable : ClientExit.refused;
  }
}

interface BatchResult {
  status?: unknown;
  error?: { code?: unknown; message?: unknown };
}

/**
 * Print a batch's answer (one result per line, still one JSON document), name the ops that did not
 * succeed on stderr, and choose the exit code from the first of them.
 */
async function printBatch(context: Context, text: string): Promise<number> {
  let results: BatchResult[];
  try {
    const parsed = JSON.parse(text) as { results?: unknown };
    if (
      !Array.isArray(parsed.results) ||
      !parsed.results.every((r) => typeof r === "object" && r !== null && typeof r.status === "number")
    ) {
      throw new Error("no results");
    }
    results = parsed.results as BatchResult[];
  } catch {
    // The node answered 200, so it ran the ops; what became of them we cannot tell.
    await context.io.stderr(
      `Error: the answer of ${context.endpoint} is not a batch result; the ops may or may not have taken effect\n`,
    );
    return ClientExit.unavailable;
  }
  await context.io.stdout(`{"results":[${results.map((r) => `\n${JSON.stringify(r)}`).join(",")}\n]}\n`);
  let exit: number = ClientExit.ok;
  let failed = 0;
  for (const [index, result] of results.entries()) {
    if (result.status === 200) continue;
    const status = result.status as number;
    const code = typeof result.error?.code === "string" ? result.error.code : "";
    const message = typeof result.error?.message === "string" ? result.error.message : `HTTP ${status}`;
    if (failed < batchFailuresShownMax) await context.io.stderr(`Error: op ${index}: ${status} ${message}\n`);
    if (failed === 0) exit = exitCodeOf(code, status);
    failed += 1;
  }
  if (failed > batchFailuresShownMax)
    await context.io.stderr(`Error: ... and ${failed - batchFailuresShownMax} more ops that did not succeed\n`);
  return exit;
}

/** `batch --binary`: the JSON request sent in the binary format, its answer printed as JSON results. */
async function sendBinaryBatch(context: Context, json: Uint8Array, source: string): Promise<number> {
  const ops = binaryOpsOfJson(new TextDecoder().decode(json), source);
  let body: Uint8Array;
  try {
    body = encodeBinaryBatch(ops);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const response = await call(
    context,
    "POST",
    "/v1/batch",
    { body, headers: { "content-type": batchBinaryType } },
    true,
  );
  if (typeof response === "number") return response;
  if (response.status !== 200) return failure(context, response);
  const results = decodeBinaryResults(new Uint8Array(await response.arrayBuffer()), ops);
  // printBatch reports an answer that is not a batch result (the ops may or may not have run).
  return printBatch(context, typeof results === "string" ? "" : JSON.stringify({ results: results.map(jsonResultOf) }));
}

/** A file's bytes, or null when it is longer than bytesMax; a file that cannot be read is a usage error. */
async function readFileBounded(path: string, bytesMax: number): Promise<Uint8Array | null> {
  const file = Bun.file(path);
  try {
    if (file.size > bytesMax) return null;
    return await readStreamBounded(file.stream(), bytesMax);
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/** The real process: Bun's stdout/stderr and a bounded read of stdin. */
export function processIo(): ClientIo {
  return {
    stdout: async (data) => {
      await Bun.write(Bun.stdout, data);
    },
    stderr: async (text) => {
      await Bun.write(Bun.stderr, text);
    },
    readStdin: (bytesMax) => readStreamBounded(Bun.stdin.stream(), bytesMax),
    env: process.env,
  };
}

async function readStreamBounded(stream: ReadableStream<Uint8Array>, bytesMax: number): Promise<Uint8Array | null> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of stream) {
    length += chunk.byteLength;
    if (length > bytesMax) return null;
    chunks.push(chunk);
  }
  const value = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    value.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return value;
}
