// The two reference servers of the GET benchmarks (bench/http-get-cpu.ts), each in its own process;
// prints its port on the first line.
//   bun bench/http-floor-servers.ts trivial|contract [port]
// trivial:  Bun.serve({ fetch: () => new Response("hello") }), the yardstick.
// contract: what hermes-kv's GET contract needs of Bun and nothing else, i.e. the floor of this
//           path on Bun: read the method, the URL (the raw key, and whether a query follows) and the
//           headers (If-Match / If-None-Match must be refused on a GET), and answer a copy of the
//           value with the three headers of a GET's answer (content-type, cache-control, ETag).
//           No replica, no metrics, no auth.

const kind = process.argv[2];
const port = Number(process.argv[3] ?? 0);
const value = new TextEncoder().encode("hello");
const answerHeaders = new Headers({
  "content-type": "application/octet-stream",
  "cache-control": "no-store",
  etag: '"2.0"',
});

function contract(request: Request): Response {
  if (request.method !== "GET") return new Response("method not allowed", { status: 405 });
  const url = request.url;
  const pathStart = url.indexOf("/", url.indexOf("://") + 3);
  if (url.indexOf("?", pathStart) >= 0) return new Response("query", { status: 400 });
  const headers = request.headers;
  if (headers.get("if-match") !== null || headers.get("if-none-match") !== null)
    return new Response("conditional", { status: 400 });
  // As a replica's read: the value is copied out of the store before it is handed out.
  return new Response(value.slice(), { status: 200, headers: answerHeaders });
}

let server: ReturnType<typeof Bun.serve>;
if (kind === "trivial") server = Bun.serve({ hostname: "127.0.0.1", port, fetch: () => new Response("hello") });
else if (kind === "contract") server = Bun.serve({ hostname: "127.0.0.1", port, fetch: contract });
else throw new Error(`usage: bun bench/http-floor-servers.ts trivial|contract [port], got ${kind}`);
console.log(server.port);
