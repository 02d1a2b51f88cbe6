// Holds every import in src/ and ffi/ to the project's layer map (docs/layers.json): each file
// belongs to one part, each import between parts must be a declared arrow and never a "never" edge,
// and no two parts may reach each other through any chain of imports (a directory cycle). As with
// the purity test, the detector is itself tested on made-up import graphs, so it can fail.

import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";

interface LayerMap {
  parts: Record<string, { is: string[]; says: string }>;
  arrows: [string, string][];
  never: [string, string, string][];
}

interface ImportEdge {
  fromFile: string;
  toFile: string;
}

const root = normalize(join(import.meta.dir, ".."));
const layerMap = JSON.parse(readFileSync(join(root, "docs/layers.json"), "utf8")) as LayerMap;

/** Static imports, re-exports and dynamic imports with a literal relative specifier. */
const importPattern = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']+)["']/gm;

function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith(".ts") && !name.endsWith(".test.ts")) out.push(path);
  }
  return out;
}

function importsOf(files: string[]): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of files) {
    const code = stripComments(readFileSync(file, "utf8"));
    for (const match of code.matchAll(importPattern)) {
      edges.push({ fromFile: relative(root, file), toFile: relative(root, normalize(join(dirname(file), match[1]!))) });
    }
  }
  return edges;
}

/** The part a repository-relative path belongs to: the longest matching prefix wins. */
function partOf(map: LayerMap, path: string): string | null {
  let best: string | null = null;
  let bestLength = -1;
  for (const [name, part] of Object.entries(map.parts)) {
    for (const prefix of part.is) {
      const matches = prefix.endsWith("/") ? path.startsWith(prefix) : path === prefix;
      if (matches && prefix.length > bestLength) {
        best = name;
        bestLength = prefix.length;
      }
    }
  }
  return best;
}

/** Every broken rule, one line each; empty when the graph keeps to the map. */
export function layerViolations(map: LayerMap, edges: ImportEdge[]): string[] {
  const problems: string[] = [];
  const declared = new Set(map.arrows.map(([a, b]) => `${a}->${b}`));
  const forbidden = new Map(map.never.map(([a, b, why]) => [`${a}->${b}`, why]));
  const partEdges = new Map<string, Set<string>>();
  for (const edge of edges) {
    const from = partOf(map, edge.fromFile);
    const to = partOf(map, edge.toFile);
    if (from === null) {
      problems.push(`${edge.fromFile}: belongs to no part of the layer map`);
      continue;
    }
    if (to === null) {
      problems.push(`${edge.fromFile} imports ${edge.toFile}, which belongs to no part of the layer map`);
      continue;
    }
    if (from === to) continue;
    const key = `${from}->${to}`;
    const why = forbidden.get(key);
    if (why !== undefined)
      problems.push(`${edge.fromFile} imports ${edge.toFile}: ${from} never imports ${to} (${why})`);
    else if (!declared.has(key))
      problems.push(`${edge.fromFile} imports ${edge.toFile}: ${key} is not an arrow of the layer map`);
    if (!partEdges.has(from)) partEdges.set(from, new Set());
    partEdges.get(from)!.add(to);
  }
  for (const cycle of partCycles(partEdges)) problems.push(`directory cycle: ${cycle.join(" -> ")}`);
  return problems;
}

/** One representative cycle per strongly connected group of parts (Tarjan's algorithm). */
function partCycles(graph: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let next = 0;
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next);
    next++;
    stack.push(node);
    onStack.add(node);
    for (const to of graph.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node)!, index.get(to)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const group: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      group.push(member);
    } while (member !== node);
    if (group.length > 1) cycles.push([...group.reverse(), group[0]!]);
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return cycles;
}

test("every import in src/ and ffi/ keeps to the layer map (docs/layers.json)", () => {
  const files = [...sourceFiles(join(root, "src")), ...sourceFiles(join(root, "ffi"))];
  const edges = importsOf(files);
  expect(files.length).toBeGreaterThan(50);
  expect(edges.length).toBeGreaterThan(100);
  expect(layerViolations(layerMap, edges)).toEqual([]);
});

test("every part of the map names at least one existing path, and every arrow names known parts", () => {
  for (const [name, part] of Object.entries(layerMap.parts)) {
    for (const prefix of part.is)
      expect(`${name}: ${prefix} exists=${statSync(join(root, prefix), { throwIfNoEntry: false }) !== undefined}`).toBe(
        `${name}: ${prefix} exists=true`,
      );
  }
  for (const [a, b] of [...layerMap.arrows, ...layerMap.never.map(([x, y]) => [x, y] as [string, string])]) {
    expect(layerMap.parts[a] !== undefined && layerMap.parts[b] !== undefined).toBe(true);
  }
});

test("the detector finds a forbidden edge, an undeclared edge, an unmapped file and a cycle", () => {
  const map: LayerMap = {
    parts: {
      Low: { is: ["src/low/"], says: "" },
      Mid: { is: ["src/mid/"], says: "" },
      Top: { is: ["src/top/", "src/top.ts"], says: "" },
    },
    arrows: [
      ["Top", "Mid"],
      ["Mid", "Low"],
      ["Low", "Mid"],
    ],
    never: [["Low", "Top", "downward only"]],
  };
  const edge = (fromFile: string, toFile: string): ImportEdge => ({ fromFile, toFile });
  expect(layerViolations(map, [edge("src/top.ts", "src/mid/a.ts"), edge("src/mid/a.ts", "src/low/b.ts")])).toEqual([]);
  expect(layerViolations(map, [edge("src/low/b.ts", "src/top/c.ts")])).toEqual([
    "src/low/b.ts imports src/top/c.ts: Low never imports Top (downward only)",
  ]);
  expect(layerViolations(map, [edge("src/top/c.ts", "src/low/b.ts")])).toEqual([
    "src/top/c.ts imports src/low/b.ts: Top->Low is not an arrow of the layer map",
  ]);
  expect(layerViolations(map, [edge("src/other.ts", "src/low/b.ts")])).toEqual([
    "src/other.ts: belongs to no part of the layer map",
  ]);
  expect(layerViolations(map, [edge("src/mid/a.ts", "src/low/b.ts"), edge("src/low/b.ts", "src/mid/a.ts")])).toEqual([
    "directory cycle: Mid -> Low -> Mid",
  ]);
});

test("the import scanner sees static, type-only, re-exported and dynamic imports but not comments", () => {
  const sample = [
    'import { a } from "../x/a.ts";',
    'import type { B } from "./b.ts";',
    'export { c } from "../c.ts";',
    'const d = await import("../d.ts");',
    '// import { e } from "../e.ts";',
    'import "./side-effect.ts";',
  ].join("\n");
  const found = [...stripComments(sample).matchAll(importPattern)].map((m) => m[1]);
  expect(found).toEqual(["../x/a.ts", "./b.ts", "../c.ts", "../d.ts", "./side-effect.ts"]);
});
