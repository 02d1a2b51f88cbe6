// The transports a node can use, named in flags, in the membership (peers must agree) and in the
// worker's start message.

export type TransportKind = "udp" | "tcp" | "rdma" | "sim";
