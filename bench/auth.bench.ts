// Cost of the bearer-token check per request (mitata): AuthGuard.check on a GET of a key, with a
// valid token in a table of 3 and of 1,024 tokens, with no token (a 401 is built), and the route
// lookup alone; beside it, the whole in-process handler of a GET (fast path, memory backend) with
// and without the guard in front, so the check's share of a request shows in one run.
//
//   bun bench/auth.bench.ts

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { OpKind } from "../src/base/kinds.ts";
import { createHttpHandler } from "../src/http/app.ts";
import { parseAuthFile, authTokensMax } from "../src/http/auth-file.ts";
import { AuthGuard } from "../src/http/auth-guard.ts";
import { requiredAccess } from "../src/http/route-access.ts";
import { MemoryBackend } from "../test/lib/memory-backend.ts";

const token = "bench-token-admin-0c3e9a7f5b1d";
function guardOf(tokens: number): AuthGuard {
  const lines = [`${token} admin bench`];
  for (let i = 1; i < tokens; i++) lines.push(`bench-token-other-${String(i).padStart(10, "0")} read r${i}`);
  const parsed = parseAuthFile(lines.join("\n"));
  if (!parsed.ok) throw new Error(parsed.error);
  return new AuthGuard({ tokens: parsed.entries, metricsPublic: false });
}
const few = guardOf(3);
const full = guardOf(authTokensMax);
const url = "http://127.0.0.1:8080/v1/kv/bench-key";
const withToken = new Request(url, { headers: { authorization: `Bearer ${token}` } });
const withoutToken = new Request(url);

const backend = new MemoryBackend();
await backend.submit({ kind: OpKind.Write, key: "bench-key", value: new TextEncoder().encode("v".repeat(32)) });
const open = createHttpHandler(backend).fetch;
const guarded = createHttpHandler(backend, undefined, undefined, few).fetch;

group("the check alone", () => {
  summary(() => {
    bench("route lookup (requiredAccess)", () => do_not_optimize(requiredAccess("GET", url, false)));
    bench("check: valid token, 3 tokens", () => do_not_optimize(few.check(withToken)));
    bench(`check: valid token, ${authTokensMax} tokens`, () => do_not_optimize(full.check(withToken)));
    bench("check: no token (401 built)", () => do_not_optimize(few.check(withoutToken)));
  });
});

group("GET of a key through the handler (fast path, memory backend)", () => {
  summary(() => {
    bench("no auth file", () => do_not_optimize(open(withToken)));
    bench("auth file, valid token", () => do_not_optimize(guarded(withToken)));
  });
});

await run();
