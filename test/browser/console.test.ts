// The web console in a real headless chromium (Debian's, driven over the DevTools protocol) against
// a real 3-replica cluster (LocalCluster: shard workers, TCP between replicas, HTTP on 127.0.0.1):
//   - the page lists the members with their HTTP addresses, each serving, live from /v1/status;
//   - a key created, read, CAS-edited, incremented and deleted in the browser is read back through
//     the API from another replica; a stale CAS shows the 412 with the current ETag;
//   - keyboard use: every field is labelled, Tab follows the reading order with a visible focus,
//     Enter submits; at 390 px nothing is wider than the screen;
//   - the same page against 3 `hermes-kv node` processes with a real etcd: the members' HTTP
//     addresses come from their etcd member records; a node cut off from etcd loses its lease, its
//     page's live updates end with `event: unavailable` and the reason, the other nodes' pages show
//     it gone, and after healing it is back everywhere (with the watch route);
//   - a stopped replica drops out of the view the page shows, and a write through that replica's
//     console shows the API's 503 and why;
//   - with the list and watch routes (issue 12 items 2-3): prefix search with paging, and a change
//     made through the API appearing in the page through the watch stream.
// Every op, the browser's included (from just before its click to the page showing the answer),
// goes into one client history that is checked for linearizability. Screenshots go to
// test/browser/out/ (printed).

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster } from "../../src/cli/local-cluster.ts";
import { createApp } from "../../src/http/app.ts";
import { Chromium, chromiumAvailable, type Page } from "../lib/chromium.ts";
import type { KvInput } from "../lib/history.ts";
import { MemoryBackend } from "../lib/memory-backend.ts";
import { Client, Recorder, errorCode, expectLinearizable, request, testSeed } from "../e2e/harness.ts";
import { ProcCluster } from "../cluster/helpers.ts";
import { etcdAvailable } from "../lib/etcd.ts";
import { checkLinearizable } from "../lib/linearizability.ts";

const seed = testSeed(0xc0_501e);
/** Every key and value of this run starts with it: values are unique across runs and ops. */
const run = `console-${seed.toString(16)}`;
const replicas = 3;
const outDir = join(import.meta.dir, "out");
/**
 * Leases long enough that a starved renewal on this shared machine does not lapse (a healthy
 * replica must answer every op here), short enough that a stopped replica leaves the view quickly.
 */
const rm = { leaseMs: 2000, renewEveryMs: 50, removalMarginMs: 50 };
/** The browser's client id in the history (the API clients are 0..replicas-1). */
const browserClient = 50;

// Are the list and watch routes (issue 12 items 2-3, another branch) in this build? Asked of the
// real HTTP app: an unknown route is answered 404 unknown_route.
async function routeExists(path: string): Promise<boolean> {
  const answer = await createApp(new MemoryBackend()).request(path);
  return !(answer.status === 404 && errorCode(await answer.text()) === "unknown_route");
}
const listAndWatch = (await routeExists("/v1/kv?prefix=")) && (await routeExists("/v1/watch?prefix=&from=now"));
if (!listAndWatch) {
  console.error(
    "console.test: GET /v1/kv?prefix= or GET /v1/watch is not in this build yet: the prefix search and live update test is SKIPPED",
  );
}

let cluster: LocalCluster | null = null;
let browser: Chromium | null = null;
let urls: string[] = [];
const log: string[] = [];
const recorder = new Recorder();
let clients: Client[] = [];

beforeAll(async () => {
  if (!chromiumAvailable()) throw new Error("chromium is missing: run scripts/install-deps.sh (Debian's chromium)");
  mkdirSync(outDir, { recursive: true });
  cluster = await LocalCluster.start({
    replicas,
    host: "127.0.0.1",
    httpPort: 0,
    shards: 2,
    transport: "tcp",
    rm,
    node: {},
    log: (line) => {
      if (log.length < 2000) log.push(`${performance.now().toFixed(1)} ${line}`);
    },
  });
  urls = Array.from({ length: replicas }, (_, i) => cluster!.url(i));
  clients = urls.map((_, i) => new Client(i, i, (r) => urls[r]!, recorder));
  browser = await Chromium.launch();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await cluster?.close();
});

async function screenshot(page: Page, name: string): Promise<void> {
  const path = join(outDir, name);
  await page.screenshot(path);
  console.error(`console.test: screenshot ${path}`);
}

/** The text the page shows in #result after `act`, which is cleared first so that a stale answer never counts. */
async function resultOf(page: Page, act: () => Promise<void>): Promise<string> {
  await page.evaluate(`document.getElementById("result").textContent = ""`);
  await act();
  return page.waitFor<string>(`document.getElementById("result").textContent`);
}

/**
 * One update made in the browser, recorded as the browser client's op from just before the click
 * to the page showing the answer, mapped as the API clients map answers (harness.ts): the page
 * shows "HTTP <status> <code>: ..." for an error.
 */
async function browserUpdate(
  page: Page,
  key: string,
  input: KvInput,
  button: string,
  act: () => Promise<void> = () => page.click(button),
): Promise<string> {
  const history = recorder.history;
  const id = history.invoke(browserClient, key, input);
  const shown = await resultOf(page, act);
  if (/^(Created|Saved|Deleted) /.test(shown)) {
    history.ok(id, input.type === "cas" ? { type: "cas", ok: true } : { type: "write" });
  } else if (/^Incremented /.test(shown)) {
    history.ok(id, {
      type: "incr",
      value: Number(await page.evaluate<string>(`document.getElementById("value").value`)),
    });
  } else if (input.type === "cas" && shown.includes("HTTP 412 precondition_failed")) {
    history.ok(id, { type: "cas", ok: false });
  } else if (/HTTP (503|429) /.test(shown)) {
    history.failed(id); // nothing was written (the API's contract for 503 and 429)
  } else {
    history.unknown(id);
    recorder.note(`browser ${button} ${key}: ${shown}`);
  }
  return shown;
}

/** Opens `key` in the editor with Enter (a read: recorded), returns what the page shows. */
async function browserOpen(page: Page, key: string): Promise<string> {
  const history = recorder.history;
  await page.fill("#key", key);
  const id = history.invoke(browserClient, key, { type: "read" });
  const shown = await resultOf(page, () => page.press("Enter"));
  if (shown.startsWith("Opened ")) {
    history.ok(id, { type: "read", value: await page.evaluate<string>(`document.getElementById("value").value`) });
  } else if (shown.endsWith("is absent: type a value and Create")) {
    history.ok(id, { type: "read", value: null });
  } else {
    history.failed(id); // a read has no effect
    recorder.note(`browser open ${key}: ${shown}`);
  }
  return shown;
}

const etagShown = (page: Page) => page.evaluate<string>(`document.getElementById("etag").textContent`);

test("the console shows the members live and edits keys; another replica reads them back", async () => {
  const page = await browser!.newPage(1200, 900);
  await page.goto(`${urls[0]}/ui`);

  // The members, as this node's view has them, each serving, with per-shard figures once polled twice.
  const rows = await page.waitFor<{ node: string; cells: string[] }[]>(
    `(() => {
      const rows = [...document.querySelectorAll("#members tbody tr")];
      if (rows.length !== 3 || rows.some((r) => r.querySelector("td.ops")?.textContent === "…")) return null;
      return rows.map((r) => ({ node: r.dataset.node, cells: [...r.cells].map((c) => c.textContent) }));
    })()`,
  );
  const status = (await (await fetch(`${urls[0]}/v1/status`)).json()) as { epoch: number; members: number[] };
  expect(rows.map((r) => r.node)).toEqual(["0", "1", "2"]);
  expect(status.members).toEqual([0, 1, 2]);
  for (const [i, row] of rows.entries()) {
    expect(row.cells[1]).toBe(cluster!.httpAddress(i));
    expect(row.cells[2]).toBe("serving");
    expect(row.cells[3]).toBe(String(status.epoch));
    expect(row.cells[5]).toBe("0, 1, 2");
    expect(row.cells[6]).toMatch(/^0: \d+, 1: \d+$/); // keys of both shards
    expect(row.cells[7]).toMatch(/^0: \d+, 1: \d+$/); // ops/s of both shards
  }
  expect(await page.evaluate<string>(`document.getElementById("node-label").textContent`)).toBe(
    `· node 0 · epoch ${status.epoch}`,
  );

  // Create in the browser (replica 0), read back through the API from replica 2.
  const key = `${run}/created`;
  expect(await browserOpen(page, key)).toBe(`${key} is absent: type a value and Create`);
  const first = `${run}-v1-from-browser`;
  await page.fill("#value", first);
  expect(await browserUpdate(page, key, { type: "cas", expected: null, value: first }, "#create")).toStartWith(
    `Created ${key}: ETag "`,
  );
  expect((await clients[2]!.read(key)).value).toBe(first);
  expect(clients[2]!.known(key)!.etag).toBe(await etagShown(page));

  // Create again: 412, with nothing written.
  const again = `${run}-v1b-from-browser`;
  await page.fill("#value", again);
  expect(await browserUpdate(page, key, { type: "cas", expected: null, value: again }, "#create")).toContain(
    "HTTP 412 precondition_failed",
  );

  // A write through the API (replica 1) makes the browser's ETag stale: its CAS shows the 412 and the current ETag.
  await browserOpen(page, key);
  const second = `${run}-v2-from-api`;
  expect(await clients[1]!.put(key, second)).toBe("ok");
  const current = clients[1]!.known(key)!.etag;
  const third = `${run}-v3-from-browser`;
  await page.fill("#value", third);
  const stale = await browserUpdate(page, key, { type: "cas", expected: first, value: third }, "#save");
  expect(stale).toContain("HTTP 412 precondition_failed");
  expect(stale).toContain(`(current ETag ${current})`);
  // Opened again, the CAS holds: saved from the keyboard, Ctrl+Enter in the value.
  expect(await browserOpen(page, key)).toBe(`Opened ${key}`);
  expect(await etagShown(page)).toBe(current);
  await page.fill("#value", third);
  const saved = await browserUpdate(page, key, { type: "cas", expected: second, value: third }, "#save", () =>
    page.press("Enter", { ctrl: true }),
  );
  expect(saved).toStartWith(`Saved ${key}: ETag "`);
  expect(await page.evaluate<string>(`document.getElementById("value").value`)).toBe(third); // no newline typed
  expect((await clients[2]!.read(key)).value).toBe(third);

  // Increment in the browser, then through the API on another replica.
  const counter = `${run}/counter`;
  await browserOpen(page, counter);
  await page.fill("#by", "5");
  expect(await browserUpdate(page, counter, { type: "incr", by: 5 }, "#incr")).toStartWith(`Incremented ${counter}`);
  expect(await clients[1]!.incr(counter, 2)).toEqual({ outcome: "ok", value: 7 });

  // Delete in the browser; replica 2 no longer has the key.
  await browserOpen(page, key);
  expect(await browserUpdate(page, key, { type: "write", value: null }, "#delete")).toStartWith(`Deleted ${key}`);
  expect((await clients[2]!.read(key)).value).toBe(null);

  // Bad input is refused in the page, with nothing sent.
  await page.fill("#by", "1.5");
  expect(await resultOf(page, () => page.click("#incr"))).toBe("By must be a whole number");

  await screenshot(page, "console-1200.png");
  expect(recorder.unexpected).toEqual([]);
  expectLinearizable(recorder.check(), log);
  // The check is not vacuous: the same history plus a read, after everything, of the value the
  // browser created first (overwritten, then deleted) is rejected.
  const end = performance.now();
  const ops = recorder.ops();
  const staleRead = {
    id: ops.length + 1_000_000,
    client: 999,
    key,
    call: end,
    ret: end + 1,
    input: { type: "read" as const },
    output: { type: "read" as const, value: first },
  };
  expect(checkLinearizable([...ops, staleRead]).ok).toBe(false);
}, 120_000);

test("the console is keyboard friendly and fits a 390 px screen", async () => {
  const page = await browser!.newPage(390, 844);
  await page.goto(`${urls[1]}/ui`);
  await page.waitFor(`document.querySelectorAll("#members tbody tr").length === 3`);
  // Every field has a label.
  const unlabelled = await page.evaluate<string[]>(
    `[...document.querySelectorAll("input, textarea")].filter((e) => e.labels.length === 0).map((e) => e.id)`,
  );
  expect(unlabelled).toEqual([]);
  // Tab goes through the editor in reading order, and the focused control has a visible outline.
  await page.evaluate(`document.getElementById("key").focus()`);
  const order: { id: string; outline: string }[] = [];
  for (let i = 0; i < 7; i++) {
    await page.press("Tab");
    order.push(
      await page.evaluate(
        `({ id: document.activeElement.id, outline: getComputedStyle(document.activeElement).outlineStyle })`,
      ),
    );
  }
  expect(order.map((o) => o.id)).toEqual(["load", "value", "save", "create", "delete", "by", "incr"]);
  expect(order.every((o) => o.outline === "solid")).toBe(true);
  // Enter in the key field opens the key (a form submit, no mouse): recorded as a read.
  expect(await browserOpen(page, `${run}/counter`)).toBe(`Opened ${run}/counter`);
  expect(await page.evaluate<string>(`document.getElementById("value").value`)).toBe("7");
  // Nothing is wider than the screen: the member table turns into one block per member.
  expect(await page.evaluate<number>(`document.documentElement.scrollWidth`)).toBeLessThanOrEqual(390);
  expect(await page.evaluate<string>(`getComputedStyle(document.querySelector("#members td")).display`)).toBe("block");
  await screenshot(page, "console-390.png");
  expect(recorder.unexpected).toEqual([]);
  expectLinearizable(recorder.check(), log);
}, 120_000);

test.skipIf(!listAndWatch)(
  "prefix search pages through the list API, and a change made through the API appears through the watch stream",
  async () => {
    const page = await browser!.newPage(1200, 900);
    await page.goto(`${urls[0]}/ui`);
    const prefix = `${run}/list/`;
    const keys = Array.from({ length: 25 }, (_, i) => `${prefix}k${String(i).padStart(2, "0")}`);
    const etags = new Map<string, string>();
    for (const [i, key] of keys.entries()) {
      const client = clients[i % replicas]!;
      expect(await client.put(key, `${run}-list-${i}`)).toBe("ok");
      etags.set(key, client.known(key)!.etag);
    }
    // Search with Enter, 10 per page; every listed value is recorded as a read within the request.
    await page.fill("#limit", "10");
    await page.fill("#prefix", prefix);
    const listedRows = () =>
      page.evaluate<{ key: string; etag: string; value: string }[]>(
        `[...document.querySelectorAll("#keys tbody tr")].map((r) => ({ key: r.dataset.key, etag: r.cells[1].textContent, value: r.cells[2].textContent }))`,
      );
    const recordPage = async (act: () => Promise<void>, expected: number) => {
      const history = recorder.history;
      const call = performance.now();
      await act();
      await page.waitFor(`document.querySelectorAll("#keys tbody tr").length === ${expected}`);
      const ret = performance.now();
      for (const row of await listedRows()) {
        const id = history.invoke(browserClient + 1, row.key, { type: "read" }, call);
        history.ok(id, { type: "read", value: row.value }, ret);
      }
    };
    await recordPage(() => page.press("Enter"), 10);
    expect(await page.evaluate<boolean>(`document.getElementById("more").hidden`)).toBe(false);
    await recordPage(() => page.click("#more"), 20);
    await recordPage(() => page.click("#more"), 25);
    expect(await page.evaluate<boolean>(`document.getElementById("more").hidden`)).toBe(true);
    const listed = await listedRows();
    expect(listed.map((r) => r.key)).toEqual(keys);
    expect(listed.map((r) => r.etag)).toEqual(keys.map((k) => etags.get(k)!));
    expect(listed.map((r) => r.value)).toEqual(keys.map((_, i) => `${run}-list-${i}`));

    // Live: the watch is on; an update, a new key and a delete made through the API on other replicas appear.
    await page.waitFor(`document.getElementById("watch-status").textContent.startsWith("Live updates: on")`);
    const changed = `${run}-list-5-changed-by-api`;
    expect(await clients[1]!.put(keys[5]!, changed)).toBe("ok");
    const added = `${prefix}zz-new`;
    expect(await clients[2]!.put(added, `${run}-new-by-api`)).toBe("ok");
    expect(await clients[2]!.remove(keys[7]!)).toBe("ok");
    const cellOf = (key: string, column: number) =>
      `document.querySelector('#keys tbody tr[data-key="${key}"]')?.cells[${column}].textContent`;
    await page.waitFor(`${cellOf(keys[5]!, 2)} === ${JSON.stringify(changed)}`);
    expect(await page.evaluate<string>(cellOf(keys[5]!, 1))).toBe(clients[1]!.known(keys[5]!)!.etag);
    await page.waitFor(`${cellOf(added, 2)} === ${JSON.stringify(`${run}-new-by-api`)}`);
    await page.waitFor(`${cellOf(keys[7]!, 2)} === "(deleted)"`);
    await screenshot(page, "console-watch.png");

    // A listed key opened with a click (a read), changed through the API while open: the page says
    // so from the watch, and its CAS on the ETag it opened is refused with the current ETag.
    const key = keys[5]!;
    const openId = recorder.history.invoke(browserClient, key, { type: "read" });
    await page.evaluate(`document.getElementById("result").textContent = ""`);
    await page.click(`#keys tbody tr[data-key="${key}"] button`);
    expect(await page.waitFor<string>(`document.getElementById("result").textContent`)).toBe(`Opened ${key}`);
    const opened = await page.evaluate<string>(`document.getElementById("value").value`);
    recorder.history.ok(openId, { type: "read", value: opened });
    expect(opened).toBe(changed);
    const later = `${run}-list-5-changed-again-by-api`;
    expect(await clients[2]!.put(key, later)).toBe("ok");
    const current = clients[2]!.known(key)!.etag;
    await page.waitFor(
      `document.getElementById("remote").textContent === ${JSON.stringify(`Changed elsewhere: now ETag ${current} (open it again to edit that value)`)}`,
    );
    await page.fill("#value", `${run}-list-5-from-browser`);
    const refused = await browserUpdate(
      page,
      key,
      { type: "cas", expected: changed, value: `${run}-list-5-from-browser` },
      "#save",
    );
    expect(refused).toContain(`HTTP 412 precondition_failed`);
    expect(refused).toContain(`(current ETag ${current})`);
    expect(recorder.unexpected).toEqual([]);
    expectLinearizable(recorder.check(), log);
  },
  120_000,
);

test("a stopped replica leaves the view the page shows, and its console shows the API's 503 and why", async () => {
  const page = await browser!.newPage(1200, 900);
  await page.goto(`${urls[0]}/ui`);
  await page.waitFor(`document.querySelectorAll("#members tbody tr").length === 3`);
  const stop = await request(`${urls[2]}/v1/admin/stop`, { method: "POST" });
  expect(stop.kind === "response" && stop.status).toBe(200);
  // Once its lease expired the RM removed it: two members, in a later epoch.
  const summary = await page.waitFor<string>(
    `(() => { const s = document.getElementById("cluster-summary").textContent;
      return document.querySelectorAll("#members tbody tr").length === 2 && s.startsWith("2 members") ? s : null; })()`,
  );
  const status = (await (await fetch(`${urls[0]}/v1/status`)).json()) as { epoch: number; members: number[] };
  expect(status.members).toEqual([0, 1]);
  expect(summary).toStartWith(`2 members in epoch ${status.epoch} of node 0; 2 serving`);
  await screenshot(page, "console-replica-stopped.png");

  // The stopped replica's own console still loads (its port is held), and a write there is refused.
  const stopped = await browser!.newPage(1200, 900);
  await stopped.goto(`${urls[2]}/ui`);
  const key = `${run}/refused`;
  await stopped.fill("#key", key);
  await stopped.fill("#value", `${run}-never-written`);
  const shown = await browserUpdate(
    stopped,
    key,
    { type: "cas", expected: null, value: `${run}-never-written` },
    "#create",
  );
  expect(shown).toContain("HTTP 503 unavailable");
  expect(shown).toContain("not serving");
  expect((await clients[0]!.read(key)).value).toBe(null);
  expect(recorder.unexpected).toEqual([]);
  expectLinearizable(recorder.check(), log);
}, 120_000);

/** Cuts node `url` off from etcd (or heals it) through its --test-hooks route. */
async function etcdPartition(url: string, partitioned: boolean): Promise<void> {
  const answer = await request(`${url}/v1/test/etcd`, {
    method: "POST",
    body: JSON.stringify({ partitioned }),
    headers: { "content-type": "application/json" },
  });
  if (answer.kind !== "response" || answer.status !== 200)
    throw new Error(`etcd partition hook failed: ${JSON.stringify(answer)}`);
}

// The members' HTTP addresses of a real cluster come from their etcd member records: the page
// served by node 1 shows all three nodes, serving, and a key created in it is read from node 2.
test("the console of `hermes-kv node`s with etcd: members from their etcd records; a node losing its lease ends its page's live updates with the reason, then comes back", async () => {
  if (!etcdAvailable()) throw new Error("etcd is missing: run scripts/install-deps.sh (Debian's etcd-server)");
  const procs = await ProcCluster.start({ nodes: 3, leaseMs: 2000, testHooks: true });
  try {
    const nodeUrls = procs.urls();
    const page = await browser!.newPage(1200, 900);
    await page.goto(`${nodeUrls[1]}/ui`);
    const rows = await page.waitFor<string[][]>(
      `(() => {
        const rows = [...document.querySelectorAll("#members tbody tr")].map((r) => [...r.cells].map((c) => c.textContent));
        return rows.length === 3 && rows.every((r) => r[2] === "serving") ? rows : null;
      })()`,
    );
    expect(rows.map((r) => `http://${r[1]}`)).toEqual(nodeUrls);
    expect(rows.map((r) => r[0])).toEqual(["0", "1 (this node)", "2"]);
    const api = new Client(10, 2, (i) => nodeUrls[i]!, recorder);
    const key = `${run}/on-etcd-nodes`;
    const value = `${run}-created-on-node-1`;
    await page.fill("#key", key);
    await page.fill("#value", value);
    expect(await browserUpdate(page, key, { type: "cas", expected: null, value }, "#create")).toStartWith(
      `Created ${key}`,
    );
    expect((await api.read(key)).value).toBe(value);
    await screenshot(page, "console-etcd-nodes.png");

    if (listAndWatch) {
      // Node 2 cut off from etcd loses its lease: the live updates of a page it served end with
      // `event: unavailable` and its reason; node 1's page shows node 2 gone; after healing, node 2
      // is back in both, its page's live updates come back on, and it serves the current value.
      const watcher = await browser!.newPage(1200, 900);
      await watcher.goto(`${nodeUrls[2]}/ui`);
      await watcher.waitFor(`document.getElementById("watch-status").textContent === "Live updates: on"`);
      await etcdPartition(nodeUrls[2]!, true);
      await watcher.waitFor(
        `[...document.querySelectorAll("#changes li")].some((li) => / this node is unavailable \\(.+\\); retrying$/.test(li.textContent))`,
        30_000,
        `[...document.querySelectorAll("#changes li")].map((li) => li.textContent).join(" | ")`,
      );
      await page.waitFor(
        `document.getElementById("cluster-summary").textContent.startsWith("2 members") && document.querySelectorAll("#members tbody tr").length === 2`,
        30_000,
      );
      const during = `${run}-written-while-node-2-was-out`;
      const writer = new Client(11, 0, (i) => nodeUrls[i]!, recorder);
      expect(await writer.put(key, during)).toBe("ok");
      await etcdPartition(nodeUrls[2]!, false);
      await page.waitFor(
        `(() => { const rows = [...document.querySelectorAll("#members tbody tr")];
          return rows.length === 3 && rows.every((r) => r.cells[2].textContent === "serving"); })()`,
        60_000,
      );
      await watcher.waitFor(`document.getElementById("watch-status").textContent === "Live updates: on"`, 60_000);
      expect((await api.read(key)).value).toBe(during);
      await screenshot(watcher, "console-etcd-node-2-back.png");
    }
    expect(recorder.unexpected).toEqual([]);
    expectLinearizable(recorder.check(), log);
  } catch (error) {
    console.error(procs.logs());
    throw error;
  } finally {
    await procs.close();
  }
}, 120_000);
