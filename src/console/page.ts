// The console's document and style sheet, as strings compiled into the binary (no build step: the
// browser gets exactly this text). The script is in script.ts. Markup only: every value from the
// store or from a member is put in by the script through textContent, never as HTML.
//
// Keyboard use: every field has a <label>, the tab order is the reading order (no tabindex games),
// each form submits on Enter, Ctrl+Enter in the value saves, and focus is always visible (outline).
// Narrow screens: one column below 700 px, and the wide tables scroll inside their own box.

export const consoleHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hermes-kv console</title>
<link rel="stylesheet" href="/ui/console.css">
<script src="/ui/console.js" defer></script>
</head>
<body>
<header>
  <h1>hermes-kv <span id="node-label"></span></h1>
  <form id="token-form" autocomplete="off">
    <label for="token">Token</label>
    <input id="token" type="password" placeholder="none" spellcheck="false">
    <button type="submit">Use token</button>
  </form>
</header>
<main>
<section id="cluster" aria-labelledby="cluster-h">
  <h2 id="cluster-h">Cluster</h2>
  <p id="cluster-summary" role="status">Loading the members…</p>
  <div class="scroll">
  <table id="members">
    <caption>Every member of this node's view, polled each second through this node</caption>
    <thead><tr><th scope="col">Node</th><th scope="col">HTTP</th><th scope="col">State</th><th scope="col">Epoch</th>
    <th scope="col">Lease</th><th scope="col">Members</th><th scope="col">Keys per shard</th><th scope="col">Ops/s per shard</th></tr></thead>
    <tbody></tbody>
  </table>
  </div>
</section>
<section id="browser" aria-labelledby="keys-h">
  <h2 id="keys-h">Keys</h2>
  <form id="search-form">
    <label for="prefix">Prefix</label>
    <input id="prefix" spellcheck="false" placeholder="(all keys)">
    <label for="limit">Page size</label>
    <input id="limit" type="number" min="1" max="10000" step="1" value="50">
    <button type="submit" id="search">Search</button>
  </form>
  <p id="list-status" role="status"></p>
  <p id="watch-status" role="status"></p>
  <details id="changes-box"><summary>Recent live updates</summary><ol id="changes" reversed></ol></details>
  <div class="scroll">
  <table id="keys">
    <thead><tr><th scope="col">Key</th><th scope="col">ETag</th><th scope="col">Value</th></tr></thead>
    <tbody></tbody>
  </table>
  </div>
  <button type="button" id="more" hidden>Next page</button>
</section>
<section id="editor" aria-labelledby="editor-h">
  <h2 id="editor-h">Key</h2>
  <form id="load-form">
    <label for="key">Key</label>
    <input id="key" spellcheck="false" required>
    <button type="submit" id="load">Open</button>
  </form>
  <p>ETag: <output id="etag" for="key">none</output> <span id="remote"></span></p>
  <label for="value">Value</label>
  <textarea id="value" rows="4" spellcheck="false"></textarea>
  <div class="actions">
    <button type="button" id="save">Save (If-Match)</button>
    <button type="button" id="create">Create (If-None-Match: *)</button>
    <button type="button" id="delete">Delete</button>
    <span class="incr">
      <label for="by">By</label>
      <input id="by" type="number" step="1" value="1">
      <button type="button" id="incr">Increment</button>
    </span>
  </div>
  <p id="result" role="status" aria-live="polite"></p>
</section>
</main>
</body>
</html>
`;

export const consoleCss = `
:root { color-scheme: light dark; --accent: #0b62c4; --bad: #b3261e; --good: #1b7d3a; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center; justify-content: space-between;
  padding: .6rem 1rem; border-bottom: 1px solid #8884; }
h1 { font-size: 1.2rem; margin: 0; }
h1 span { font-weight: normal; font-size: .95rem; }
h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem; padding: 1rem; }
#cluster { grid-column: 1 / -1; }
section { min-width: 0; }
form, .actions { display: flex; flex-wrap: wrap; gap: .4rem; align-items: center; margin-bottom: .5rem; }
label { font-weight: 600; }
input, textarea, button { font: inherit; padding: .3rem .5rem; border: 1px solid #888; border-radius: 4px; }
input#limit, input#by { width: 6rem; }
textarea { width: 100%; font-family: ui-monospace, monospace; }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
button.link { background: none; color: var(--accent); border: none; padding: 0; text-align: left;
  text-decoration: underline; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
#keys td:first-child { min-width: 12rem; }
:focus-visible { outline: 3px solid #f5a623; outline-offset: 2px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; font-size: .85rem; opacity: .8; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #8884; vertical-align: top; }
td { font-variant-numeric: tabular-nums; }
td.value { font-family: ui-monospace, monospace; overflow-wrap: anywhere; max-width: 24rem; }
.serving { color: var(--good); font-weight: 600; }
.down { color: var(--bad); font-weight: 600; }
.error { color: var(--bad); }
.fresh { animation: flash 1.5s; }
@keyframes flash { from { background: #f5a62366; } to { background: transparent; } }
output { font-family: ui-monospace, monospace; }
input { min-width: 0; }
@media (max-width: 700px) {
  main { grid-template-columns: minmax(0, 1fr); padding: .5rem; }
  /* The members table becomes one card per member: each cell on its own line, named by its header. */
  #members thead { display: none; }
  #members tr { display: block; padding: .4rem 0; border-bottom: 1px solid #8884; }
  #members td { display: block; border: none; padding: .05rem .25rem; }
  #members td[data-label]::before { content: attr(data-label) ": "; font-weight: 600; }
  header { padding: .5rem; }
  input#prefix, input#key { flex: 1 1 10rem; }
}
`;
