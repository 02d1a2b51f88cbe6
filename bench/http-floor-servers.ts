// The reference servers of the GET benchmarks (bench/http-get-cpu.ts --floors), each in its own
// process; prints its port on the first line.
//   bun bench/http-floor-servers.ts KIND [port]
// trivial:  Bun.serve({ fetch: () => new Response("hello") }), the yardstick.
// contract: what hermes-kv's GET contract needs of Bun and nothing else, i.e. the floor of this
//           path on Bun: read the method, the URL (the raw key, and whether a query follows) and the
//           headers (If-Match / If-None-Match must be refused on a GET), and answer a copy of the
//           value with the three headers of a GET's answer (content-type, cache-control, ETag).
//           No replica, no metrics, no auth.
// The others take the contract apart, to price each of Bun's parts (none of them keeps the contract):
// answer-only:        the answer, without reading the URL or any header
// routes:             Bun.serve's native `routes` ("/v1/kv/:key", GET), the answer, nothing read
// routes-url:         routes, and request.url read (to see a query or an escape in the key)
// routes-headers:     routes, and the conditional headers read
// routes-url-headers: routes with both: the contract, routed by Bun
// contract-clone:     the contract answering cachedResponse.clone() instead of building a Response

const kind = process.argv[2];
const port = Number(process.argv[3] ?? 0);
const value = new TextEncoder().encode("hello");
const answerHeaders = new Headers({
  "content-type": "application/octet-stream",
  "cache-control": "no-store",
  etag: '"2.0"',
});

/** What a GET must refuse (another method, a query, a conditional header), or null. */
function refusal(request: Request): Response | null {
  if (request.method !== "GET") return new Response("method not allowed", { status: 405 });
  const url = request.url;
  const pathStart = url.indexOf("/", url.indexOf("://") + 3);
  if (url.indexOf("?", pathStart) >= 0) return new Response("query", { status: 400 });
  const headers = request.headers;
  if (headers.get("if-match") !== null || headers.get("if-none-match") !== null)
    return new Response("conditional", { status: 400 });
  return null;
}

// As a replica's read: the value is copied out of the store before it is handed out.
const answer = (): Response => new Response(value.slice(), { status: 200, headers: answerHeaders });
const contract = (request: Request): Response => refusal(request) ?? answer();

const cached = answer();
const fallback = (): Response => new Response("not routed", { status: 404 });

/** The URL and header reads of `contract`, for the routed kinds; null when they would refuse. */
function reads(request: Request, url: boolean, headers: boolean): Response | null {
  if (url && request.url.includes("?")) return new Response("query", { status: 400 });
  if (headers && (request.headers.get("if-match") !== null || request.headers.get("if-none-match") !== null))
    return new Response("conditional", { status: 400 });
  return null;
}

function routed(url: boolean, headers: boolean): ReturnType<typeof Bun.serve> {
  return Bun.serve({
    hostname: "127.0.0.1",
    port,
    routes: { "/v1/kv/:key": { GET: (request) => reads(request, url, headers) ?? answer() } },
    fetch: fallback,
  });
}

const kinds: Record<string, () => ReturnType<typeof Bun.serve>> = {
  trivial: () => Bun.serve({ hostname: "127.0.0.1", port, fetch: () => new Response("hello") }),
  contract: () => Bun.serve({ hostname: "127.0.0.1", port, fetch: contract }),
  "answer-only": () => Bun.serve({ hostname: "127.0.0.1", port, fetch: answer }),
  routes: () => routed(false, false),
  "routes-url": () => routed(true, false),
  "routes-headers": () => routed(false, true),
  "routes-url-headers": () => routed(true, true),
  "contract-clone": () =>
    Bun.serve({
      hostname: "127.0.0.1",
      port,
      // Bun types clone() with undici's Response; it is Bun's.
      fetch: (request) => refusal(request) ?? (cached.clone() as Response),
    }),
};
const start = kinds[kind ?? ""];
if (start === undefined)
  throw new Error(`usage: bun bench/http-floor-servers.ts ${Object.keys(kinds).join("|")} [port], got ${kind}`);
const server = start();
console.log(server.port);
