// Protected mode: which addresses count as loopback, and which combinations of TLS, auth file,
// cluster key and --insecure let a node or a local cluster start.

import { expect, test } from "bun:test";
import { exposureProblem, isLoopbackHost, type Exposure } from "../../src/cli/exposure-check.ts";

test("loopback addresses are 127.0.0.0/8, ::1 and localhost; the wildcard addresses are not", () => {
  for (const host of ["127.0.0.1", "127.1.2.3", "127.255.255.255", "::1", "[::1]", "localhost"])
    expect(isLoopbackHost(host)).toBe(true);
  for (const host of [
    "0.0.0.0",
    "::",
    "10.0.0.1",
    "128.0.0.1",
    "127.0.0.256",
    "127.0.0",
    "localhost.evil",
    "1.127.0.0.1",
    "",
  ])
    expect(isLoopbackHost(host)).toBe(false);
});

const secured: Exposure = {
  addresses: [
    { flag: "--http", host: "10.0.0.1" },
    { flag: "--listen", host: "10.0.0.1" },
  ],
  tls: true,
  authFile: true,
  clusterKeyFile: true,
  insecure: false,
};

test("a node on loopback starts with nothing set", () => {
  expect(
    exposureProblem({
      addresses: [
        { flag: "--http", host: "127.0.0.1" },
        { flag: "--listen", host: "::1" },
      ],
      tls: false,
      authFile: false,
      clusterKeyFile: false,
      insecure: false,
    }),
  ).toBeNull();
});

test("an exposed node starts with TLS, the auth file and the cluster key", () => {
  expect(exposureProblem(secured)).toBeNull();
});

test("each missing piece is named, with the exposed address and --insecure", () => {
  const cases: [Partial<Exposure>, string][] = [
    [{ tls: false }, "without TLS (--tls-cert, --tls-key);"],
    [{ authFile: false }, "without client tokens (--auth-file);"],
    [{ clusterKeyFile: false }, "without the cluster key (--cluster-key-file);"],
    [
      { tls: false, authFile: false, clusterKeyFile: false },
      "without TLS (--tls-cert, --tls-key), client tokens (--auth-file), the cluster key (--cluster-key-file);",
    ],
  ];
  for (const [change, missing] of cases) {
    const problem = exposureProblem({ ...secured, ...change });
    expect(problem).toContain(missing);
    expect(problem).toStartWith(
      "refusing to listen on --http 10.0.0.1 and --listen 10.0.0.1, reachable from other machines,",
    );
    expect(problem).toEndWith("pass --insecure to accept the risk");
    expect(problem!.includes("\n")).toBe(false);
  }
});

test("one exposed address is enough to refuse, and only it is named", () => {
  const problem = exposureProblem({
    ...secured,
    addresses: [
      { flag: "--http", host: "127.0.0.1" },
      { flag: "--listen", host: "0.0.0.0" },
    ],
    tls: false,
  });
  expect(problem).toStartWith("refusing to listen on --listen 0.0.0.0,");
});

test("--insecure accepts the risk", () => {
  expect(
    exposureProblem({ ...secured, tls: false, authFile: false, clusterKeyFile: false, insecure: true }),
  ).toBeNull();
});

test("local (no cluster key) needs TLS and the auth file off loopback", () => {
  const local: Exposure = {
    addresses: [{ flag: "--host", host: "0.0.0.0" }],
    tls: false,
    authFile: false,
    clusterKeyFile: null,
    insecure: false,
  };
  expect(exposureProblem(local)).toContain("without TLS (--tls-cert, --tls-key), client tokens (--auth-file);");
  expect(exposureProblem({ ...local, tls: true, authFile: true })).toBeNull();
  expect(exposureProblem({ ...local, addresses: [{ flag: "--host", host: "127.0.0.1" }] })).toBeNull();
});
