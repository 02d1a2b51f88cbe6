// The console's view of the other members: GET /v1/status or /metrics of a member, fetched by this
// node on the browser's behalf. Why a proxy and not CORS on the members' routes:
//   - the browser needs to reach only the node it loaded the page from (members often listen on a
//     private network, or are reached through one forwarded port);
//   - no route of the API grows cross-origin headers, so no other web page the user has open can
//     read a node's status, metrics or keys from the user's browser.
// Why it is not an open proxy: the target is only ever a member's HTTP address from this node's own
// membership view (chosen by member id, never taken from the request), the path is one of two
// fixed read-only paths with no query, the method is GET, only the Authorization header is passed
// on (the member checks it as for any request), and the answer is bounded in time and size.

import { plainPeerHttp, type PeerHttp } from "../base/peer-http.ts";
import { ErrorCode, errorResponse } from "../http/errors.ts";

/** A member as the console needs it: its id and its HTTP address ("host:port"), from the membership view. */
export interface ConsoleMember {
  id: number;
  http: string;
}

/** The member paths the console reads, by the name in /ui/member/{id}/{name}. */
export const memberPaths = { status: "/v1/status", metrics: "/metrics" } as const;
export type MemberPathName = keyof typeof memberPaths;

/** How long the proxy waits for a member's whole answer. */
export const memberProxyTimeoutMs = 2000;
/** Largest member answer passed on (a status or a metrics page is a few KiB). */
export const memberProxyBodyBytesMax = 1 << 20;

/** Answer headers passed back to the browser; everything else is dropped. */
const passedContentTypes = ["application/json", "text/plain"];

export async function fetchFromMember(
  member: ConsoleMember,
  name: MemberPathName,
  authorization: string | undefined,
  via: PeerHttp = plainPeerHttp,
): Promise<Response> {
  const url = `${via.scheme}://${member.http}${memberPaths[name]}`;
  try {
    const answer = await fetch(url, {
      headers: authorization === undefined ? {} : { authorization },
      ...(via.tls === undefined ? {} : { tls: via.tls }),
      redirect: "manual",
      signal: AbortSignal.timeout(memberProxyTimeoutMs),
    });
    const body = await readBounded(answer);
    if (body === null) {
      return errorResponse(
        502,
        ErrorCode.memberUnreachable,
        `member ${member.id} answered more than ${memberProxyBodyBytesMax} bytes`,
      );
    }
    const contentType = answer.headers.get("content-type") ?? "";
    const headers: Record<string, string> = { "cache-control": "no-store" };
    if (passedContentTypes.some((type) => contentType.startsWith(type))) headers["content-type"] = contentType;
    return new Response(body, { status: answer.status, headers });
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return errorResponse(
      502,
      ErrorCode.memberUnreachable,
      `member ${member.id} at ${member.http} did not answer: ${why}`.slice(0, 500),
    );
  }
}

/** The body, or null when it is larger than memberProxyBodyBytesMax (reading stops there). */
async function readBounded(answer: Response): Promise<Uint8Array | null> {
  if (answer.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of answer.body) {
    bytes += chunk.byteLength;
    if (bytes > memberProxyBodyBytesMax) {
      await answer.body.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(chunk);
  }
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}
