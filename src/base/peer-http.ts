// How a node reaches the other nodes' HTTP ports (state transfer, the kept-state merge, the
// console's member proxy): plain http, or https with the CA that signed their certificates and, under
// mutual TLS, this node's own certificate. Shared vocabulary, so that node and console, which must
// not import each other, describe it alike.

export interface PeerHttp {
  scheme: "http" | "https";
  /** PEM text: the CA that signed the peers' certificates (absent: the system's), and our client certificate. */
  tls?: { ca?: string; cert?: string; key?: string };
}

export const plainPeerHttp: PeerHttp = { scheme: "http" };
