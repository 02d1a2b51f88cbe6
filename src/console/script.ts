// The console's browser script, served as /ui/console.js. Plain JavaScript in a string (the project
// compiles no browser code; tsc has no DOM types here): it is exercised in a real chromium by
// test/browser/console.test.ts. It talks to the node that served the page only:
//   - the cluster: GET /ui/members, then each member's /v1/status and /metrics through
//     /ui/member/{id}/status|metrics (this node's proxy to its members: routes.ts says why);
//   - keys: the API itself (/v1/kv?prefix= to list, /v1/kv/{key} to read and write, /v1/watch to
//     follow changes, read with fetch and a stream reader so that a token can be sent).
// Every value from the store or a member goes into the page with textContent, never as HTML.
// No template literals below: the whole script is one template string.

export const consoleScript = String.raw`"use strict";
(function () {
  var pollEveryMs = 1000;
  var watchRetryMs = 2000;
  // A search lists only once its watch is subscribed (synced), so that no change falls between the
  // two; a watch that does not sync within this lets the list go ahead (the page says so).
  var watchSyncWaitMs = 5000;
  var valuePreviewChars = 120;
  var tokenStorageKey = "hermes-kv-token";

  function $(id) { return document.getElementById(id); }
  function text(el, s) { el.textContent = s; return el; }
  function cell(row, s, cls) { var td = row.insertCell(); text(td, s); if (cls) td.className = cls; return td; }
  // A members cell, named by its column (the narrow layout shows the name before the value).
  var memberColumns = ["Node", "HTTP", "State", "Epoch", "Lease", "Members", "Keys per shard", "Ops/s per shard"];
  function memberCell(row, s, cls) {
    var td = cell(row, s, cls);
    var name = memberColumns[row.cells.length - 1];
    if (name) td.dataset.label = name;
    return td;
  }

  // ---- token: kept for this tab only (sessionStorage), sent as a Bearer header when not empty.
  var token = sessionStorage.getItem(tokenStorageKey) || "";
  $("token").value = token;
  $("token-form").addEventListener("submit", function (e) {
    e.preventDefault();
    token = $("token").value.trim();
    if (token === "") sessionStorage.removeItem(tokenStorageKey); else sessionStorage.setItem(tokenStorageKey, token);
    startSearch();
    pollCluster();
  });
  function headers(extra) {
    var h = extra || {};
    if (token !== "") h["authorization"] = "Bearer " + token;
    return h;
  }
  function api(path, init) {
    init = init || {};
    init.headers = headers(init.headers);
    init.cache = "no-store";
    return fetch(path, init);
  }
  function keyPath(key) { return "/v1/kv/" + encodeURIComponent(key); }

  // An API error as the API gives it: status, code, message, and the current ETag of a 412.
  function describeError(response, bodyText) {
    var what = "HTTP " + response.status;
    try {
      var e = JSON.parse(bodyText).error;
      if (e && typeof e.message === "string") {
        what += " " + e.code + ": " + e.message;
        if (e.etag) what += " (current ETag " + e.etag + ")";
        else if (response.status === 412 && response.headers.get("etag")) what += " (current ETag " + response.headers.get("etag") + ")";
        if (response.headers.get("x-outcome") === "unknown") what += " [outcome unknown: it may have been applied]";
        return what;
      }
    } catch (err) { /* not the JSON error shape: show the text */ }
    return what + " " + bodyText.slice(0, 300);
  }

  function decodeValue(base64) {
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytesToText(bytes);
  }
  // Values are bytes: shown as UTF-8 text when they are UTF-8, else as base64, marked.
  function bytesToText(bytes) {
    try { return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), binary: false }; }
    catch (err) {
      var s = ""; for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
      return { text: btoa(s), binary: true };
    }
  }
  function preview(v) {
    var s = v.binary ? "base64 " + v.text : v.text;
    return s.length > valuePreviewChars ? s.slice(0, valuePreviewChars) + "…" : s;
  }

  // ---- cluster: members of this node's view; each one's status and metrics, every second.
  // Ops/s over the last few polls: a node refreshes its counters once a second, so the rate over a
  // single poll would jump between 0 and twice the truth.
  var rateSamplesMax = 4;
  var samples = {}; // node id -> [{ atMs, ops: { shard: count } }], oldest first
  var polling = false;
  function parseMetrics(textBody) {
    var keys = {}, ops = {};
    var re = /^hermes_(keys|reads_served_total|updates_committed_total)\{shard="(\d+)"\} (\S+)$/gm, m;
    while ((m = re.exec(textBody)) !== null) {
      var shard = m[2], v = Number(m[3]);
      if (m[1] === "keys") keys[shard] = v; else ops[shard] = (ops[shard] || 0) + v;
    }
    return { keys: keys, ops: ops };
  }
  function perShard(obj) {
    var shards = Object.keys(obj).sort(function (a, b) { return a - b; });
    if (shards.length === 0) return "–";
    return shards.map(function (s) { return s + ": " + obj[s]; }).join(", ");
  }
  async function memberRow(member) {
    var base = "/ui/member/" + member.id + "/";
    var out = { member: member, status: null, metrics: null, error: null };
    try {
      var answers = await Promise.all([api(base + "status"), api(base + "metrics")]);
      var bodies = await Promise.all([answers[0].text(), answers[1].text()]);
      if (!answers[0].ok) out.error = "status: " + describeError(answers[0], bodies[0]);
      else out.status = JSON.parse(bodies[0]);
      if (answers[1].ok) out.metrics = parseMetrics(bodies[1]);
      else if (out.error === null) out.error = "metrics: " + describeError(answers[1], bodies[1]);
    } catch (err) {
      out.error = String(err && err.message || err);
    }
    return out;
  }
  async function pollCluster() {
    if (polling) return;
    polling = true;
    try {
      var answer = await api("/ui/members");
      var bodyText = await answer.text();
      if (!answer.ok) { text($("cluster-summary"), "Members: " + describeError(answer, bodyText)); return; }
      var view = JSON.parse(bodyText);
      text($("node-label"), "· node " + view.self + " · epoch " + view.epoch);
      var rows = await Promise.all(view.members.map(memberRow));
      renderMembers(view, rows);
    } catch (err) {
      text($("cluster-summary"), "Cannot reach this node: " + (err && err.message || err));
    } finally {
      polling = false;
    }
  }
  function renderMembers(view, rows) {
    var body = $("members").tBodies[0];
    body.replaceChildren();
    var serving = 0;
    var now = performance.now();
    rows.forEach(function (r) {
      var tr = body.insertRow();
      tr.dataset.node = String(r.member.id);
      memberCell(tr, String(r.member.id) + (r.member.id === view.self ? " (this node)" : ""));
      memberCell(tr, r.member.http);
      var s = r.status;
      if (s === null) {
        memberCell(tr, "unreachable", "down");
        var td = memberCell(tr, r.error || "", "error"); td.colSpan = 5;
        return;
      }
      if (s.serving) serving++;
      memberCell(tr, s.serving ? "serving" : "not serving", s.serving ? "serving state" : "down state");
      memberCell(tr, String(s.epoch));
      memberCell(tr, s.leaseRemainingMs > 0 ? (s.leaseRemainingMs / 1000).toFixed(1) + " s" : "none");
      memberCell(tr, s.members.join(", ") + (s.suspects && s.suspects.length ? " (suspects " + s.suspects.join(", ") + ")" : ""));
      var keys = {}; s.shards.forEach(function (sh) { keys[sh.index] = sh.keys; });
      memberCell(tr, perShard(r.metrics ? r.metrics.keys : keys), "keys");
      var rates = {};
      var history = samples[r.member.id] || (samples[r.member.id] = []);
      var prev = history.length > 0 ? history[0] : null;
      if (r.metrics) {
        if (prev) {
          var seconds = (now - prev.atMs) / 1000;
          Object.keys(r.metrics.ops).forEach(function (sh) {
            var d = r.metrics.ops[sh] - (prev.ops[sh] || 0);
            // A counter that went down belongs to a restarted node: no rate until the next polls.
            rates[sh] = seconds > 0 && d >= 0 ? Math.round(d / seconds) : 0;
          });
        }
        history.push({ atMs: now, ops: r.metrics.ops });
        if (history.length > rateSamplesMax) history.shift();
      }
      memberCell(tr, prev ? perShard(rates) : "…", "ops");
      if (r.error) memberCell(tr, r.error, "error");
    });
    text($("cluster-summary"), view.members.length + " members in epoch " + view.epoch + " of node " + view.self +
      "; " + serving + " serving. Keys include deleted ones (tombstones); ops/s: reads served plus updates committed by that node.");
  }
  setInterval(pollCluster, pollEveryMs);
  pollCluster();

  // ---- key browser: prefix search with paging through GET /v1/kv?prefix=&after=&limit=&values=1.
  var shown = new Map(); // key -> { etag, value } of the rows on the page
  var search = { prefix: "", next: null, limit: 50 };
  function renderKeys() {
    var body = $("keys").tBodies[0];
    body.replaceChildren();
    var keys = Array.from(shown.keys()).sort(compareKeys);
    keys.forEach(function (k) {
      var row = shown.get(k);
      var tr = body.insertRow();
      tr.dataset.key = k;
      if (row.fresh) { tr.className = "fresh"; row.fresh = false; }
      var open = document.createElement("button");
      open.type = "button"; open.className = "link"; text(open, k);
      open.setAttribute("aria-label", "Open key " + k);
      open.addEventListener("click", function () { $("key").value = k; loadKey(); $("value").focus(); });
      var td = tr.insertCell(); td.appendChild(open);
      cell(tr, row.etag, "etag");
      cell(tr, row.deleted ? "(deleted)" : preview(row.value), "value");
    });
  }
  // Keys sort in the byte order of their UTF-8 as the list API gives them.
  var encoder = new TextEncoder();
  function compareKeys(a, b) {
    var x = encoder.encode(a), y = encoder.encode(b);
    for (var i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  }
  async function listPage(after) {
    var q = "prefix=" + encodeURIComponent(search.prefix) + "&limit=" + search.limit + "&values=1";
    if (after !== null) q += "&after=" + encodeURIComponent(after);
    text($("list-status"), "Listing…");
    try {
      var answer = await api("/v1/kv?" + q);
      var bodyText = await answer.text();
      if (!answer.ok) { text($("list-status"), "List: " + describeError(answer, bodyText)); $("list-status").className = "error"; return; }
      $("list-status").className = "";
      var page = JSON.parse(bodyText);
      page.keys.forEach(function (k) {
        merge(k.key, { etag: k.etag, value: typeof k.value === "string" ? decodeValue(k.value) : { text: "", binary: false } });
      });
      search.next = page.more ? page.next : null;
      $("more").hidden = search.next === null;
      text($("list-status"), shown.size + (shown.size === 1 ? " key shown" : " keys shown") + (page.more ? "; more after " + page.next : "; that is all") +
        (typeof page.skipped === "number" && page.skipped > 0 ? "; " + page.skipped + " skipped (not Valid)" : ""));
      renderKeys();
    } catch (err) {
      text($("list-status"), "List failed: " + (err && err.message || err)); $("list-status").className = "error";
    }
  }
  $("search-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var limit = Number($("limit").value);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10000) {
      text($("list-status"), "Page size must be a whole number from 1 to 10000"); $("list-status").className = "error"; return;
    }
    search = { prefix: $("prefix").value, next: null, limit: limit };
    startSearch();
  });
  $("more").addEventListener("click", function () { if (search.next !== null) listPage(search.next); });

  // A row is replaced only by one at least as new (ETags "version.writer" order a key's updates): a
  // list page answered after a watch event must not take the page back in time.
  function etagOrder(a, b) {
    var x = /^"(\d+)\.(\d+)"$/.exec(a), y = /^"(\d+)\.(\d+)"$/.exec(b);
    if (x === null || y === null) return 0;
    return Number(x[1]) - Number(y[1]) || Number(x[2]) - Number(y[2]);
  }
  function merge(key, row) {
    var old = shown.get(key);
    if (old !== undefined && etagOrder(row.etag, old.etag) < 0) return;
    shown.set(key, row);
  }

  // A new search, or starting over: watch first, list once the watch is subscribed.
  function startSearch() {
    shown = new Map();
    renderKeys();
    var w = restartWatch();
    var waited = new Promise(function (resolve) { setTimeout(function () { resolve(false); }, watchSyncWaitMs); });
    Promise.race([w.ready, waited]).then(function (synced) {
      if (watch !== w) return; // a newer search took over
      if (synced === false) watchNote("Live updates: not subscribed yet; the list may miss a change made meanwhile");
      listPage(null);
    });
  }

  // ---- live updates: GET /v1/watch?prefix=P&from=now, read as a stream (fetch carries the token).
  // The status line says what the stream does now; the list under it keeps the last few changes.
  var changesShownMax = 20;
  function watchNote(message, isError) {
    text($("watch-status"), message);
    $("watch-status").className = isError ? "error" : "";
    var item = document.createElement("li");
    text(item, new Date().toLocaleTimeString() + " " + message.replace(/^Live updates:? ?/, ""));
    $("changes").prepend(item);
    while ($("changes").children.length > changesShownMax) $("changes").lastElementChild.remove();
  }
  var watch = null; // { controller, cursor, ready: resolves true at synced, undefined if it cannot be }
  function restartWatch() {
    if (watch) watch.controller.abort();
    var w = { controller: new AbortController(), cursor: null, prefix: search.prefix, ready: null, settle: null };
    w.ready = new Promise(function (resolve) { w.settle = resolve; });
    watch = w;
    runWatch(w).finally(function () { w.settle(undefined); });
    return w;
  }
  async function runWatch(w) {
    while (watch === w) {
      var q = "prefix=" + encodeURIComponent(w.prefix) + (w.cursor === null ? "&from=now" : "");
      var h = w.cursor === null ? {} : { "last-event-id": w.cursor };
      var stopped = false;
      try {
        var answer = await api("/v1/watch?" + q, { headers: h, signal: w.controller.signal });
        if (!answer.ok) {
          watchNote("Live updates off: " + describeError(answer, await answer.text()), true);
          if (answer.status === 404 || answer.status === 400 || answer.status === 401 || answer.status === 403) return;
          w.settle(undefined); // the search lists without waiting for this watch
        } else {
          watchNote("Live updates: connecting…", false);
          stopped = await readEvents(w, answer.body.getReader());
        }
      } catch (err) {
        if (watch !== w) return;
        watchNote("Live updates interrupted: " + (err && err.message || err));
      }
      if (watch !== w) return;
      // After an overflow, or a break before any event gave a cursor, changes made meanwhile would be
      // lost: start over (watch, then list). With a cursor, resume from it (Last-Event-ID).
      if (stopped || w.cursor === null) {
        setTimeout(function () { if (watch === w) startSearch(); }, stopped ? 0 : watchRetryMs);
        return;
      }
      await new Promise(function (resolve) { setTimeout(resolve, watchRetryMs); });
    }
  }
  async function readEvents(w, reader) {
    var decoder = new TextDecoder();
    var buffered = "";
    var ev = { type: "message", id: null, data: "" };
    for (;;) {
      var next = await reader.read();
      if (next.done) { watchNote("Live updates: the stream ended; reconnecting"); return false; }
      buffered += decoder.decode(next.value, { stream: true });
      var lines = buffered.split(/\r\n|\r|\n/);
      buffered = lines.pop();
      for (var i = 0; i < lines.length; i++) {
        var line = lines[i];
        if (line === "") {
          if (ev.data !== "" || ev.type !== "message") {
            var verdict = onEvent(w, ev);
            if (verdict !== null) return verdict;
          }
          ev = { type: "message", id: null, data: "" };
        } else if (line[0] === ":") { /* heartbeat */ }
        else {
          var colon = line.indexOf(":");
          var field = colon < 0 ? line : line.slice(0, colon);
          var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") ev.type = value;
          else if (field === "data") ev.data = ev.data === "" ? value : ev.data + "\n" + value;
          else if (field === "id") ev.id = value;
        }
      }
    }
  }
  // null: go on reading; true: start over from the list; false: reconnect from the cursor.
  function onEvent(w, ev) {
    if (ev.id !== null) w.cursor = ev.id;
    var data = ev.data === "" ? {} : JSON.parse(ev.data);
    if (ev.type === "put" || ev.type === "delete") {
      var row = ev.type === "put"
        ? { etag: data.etag, value: decodeValue(data.value), fresh: true }
        : { etag: data.etag, value: { text: "", binary: false }, deleted: true, fresh: true };
      merge(data.key, row);
      renderKeys();
      if ($("key").value === data.key) {
        text($("remote"), ev.type === "put"
          ? "Changed elsewhere: now ETag " + data.etag + " (open it again to edit that value)"
          : "Deleted elsewhere (ETag " + data.etag + ")");
      }
      watchNote("Live updates: " + ev.type + " " + data.key + " " + data.etag);
    } else if (ev.type === "synced") {
      watchNote("Live updates: on");
      w.settle(true);
    } else if (ev.type === "overflow") {
      watchNote("Live updates fell behind (overflow); reloading the list");
      return true;
    } else if (ev.type === "unavailable") {
      watchNote("Live updates: this node is unavailable (" + (data.reason || "no reason given") + "); retrying", true);
      return false;
    }
    return null;
  }

  // ---- one key: open (GET), save with CAS on its ETag, create, delete, increment.
  var loaded = { key: null, etag: null };
  function result(message, isError) {
    text($("result"), message);
    $("result").className = isError ? "error" : "";
  }
  function currentKey() {
    var key = $("key").value;
    if (key === "") { result("Type a key first", true); $("key").focus(); return null; }
    return key;
  }
  async function loadKey() {
    var key = currentKey(); if (key === null) return;
    text($("remote"), "");
    try {
      var answer = await api(keyPath(key));
      if (answer.status === 200) {
        var v = bytesToText(new Uint8Array(await answer.arrayBuffer()));
        loaded = { key: key, etag: answer.headers.get("etag") };
        $("value").value = v.text;
        text($("etag"), loaded.etag);
        result("Opened " + key + (v.binary ? " (binary value, shown as base64: saving writes the text as typed)" : ""), false);
      } else {
        var bodyText = await answer.text();
        loaded = { key: key, etag: null };
        text($("etag"), "none");
        $("value").value = "";
        result(answer.status === 404 ? key + " is absent: type a value and Create" : describeError(answer, bodyText), answer.status !== 404);
      }
    } catch (err) { result("Open failed: " + (err && err.message || err), true); }
  }
  async function update(label, path, init) {
    try {
      var answer = await api(path, init);
      var bodyText = await answer.text();
      if (!answer.ok) { result(label + ": " + describeError(answer, bodyText), true); return null; }
      return JSON.parse(bodyText);
    } catch (err) { result(label + " failed: " + (err && err.message || err), true); return null; }
  }
  function done(key, label, etag) {
    loaded = { key: key, etag: etag };
    text($("etag"), etag === null ? "none" : etag);
    text($("remote"), "");
    result(label + " " + key + ": ETag " + etag, false);
  }
  $("load-form").addEventListener("submit", function (e) { e.preventDefault(); loadKey(); });
  async function save() {
    var key = currentKey(); if (key === null) return;
    if (loaded.key !== key || loaded.etag === null) { result("Open the key first: Save is a CAS on the ETag it was opened with", true); return; }
    var r = await update("Save", keyPath(key), { method: "PUT", body: $("value").value, headers: { "if-match": loaded.etag } });
    if (r !== null) done(key, "Saved", r.etag);
  }
  $("save").addEventListener("click", save);
  $("value").addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); save(); }
  });
  $("create").addEventListener("click", async function () {
    var key = currentKey(); if (key === null) return;
    var r = await update("Create", keyPath(key), { method: "PUT", body: $("value").value, headers: { "if-none-match": "*" } });
    if (r !== null) done(key, "Created", r.etag);
  });
  $("delete").addEventListener("click", async function () {
    var key = currentKey(); if (key === null) return;
    var r = await update("Delete", keyPath(key), { method: "DELETE" });
    if (r !== null) { done(key, "Deleted", r.etag); loaded.etag = null; $("value").value = ""; }
  });
  $("incr").addEventListener("click", async function () {
    var key = currentKey(); if (key === null) return;
    var by = $("by").value.trim();
    if (!/^-?\d+$/.test(by)) { result("By must be a whole number", true); $("by").focus(); return; }
    var r = await update("Increment", keyPath(key) + "/incr?by=" + encodeURIComponent(by), { method: "POST" });
    if (r !== null) { $("value").value = String(r.value); done(key, "Incremented", r.etag); }
  });

  startSearch();
})();
`;
