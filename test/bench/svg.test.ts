// The SVG writer of the benchmark figures (bench/svg.ts): well-formed XML, axis labels, one marker
// per point and one bar per value, text escaped, the data in <desc>, round ticks.

import { describe, expect, test } from "bun:test";
import { barChartSvg, escapeXml, formatNumber, lineChartSvg, niceTicks } from "../../bench/svg.ts";

/**
 * A small XML well-formedness check, enough for what the writer emits: one root, every tag
 * closed in order, attributes quoted and unique, no raw '<' or stray '&' in text or attributes.
 * Returns the problems found (empty when well formed).
 */
function xmlProblems(xml: string): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  let roots = 0;
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, "");
  const token = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)|(<)/g;
  const entity = /&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)/;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = token.exec(body)) !== null) {
    consumed += m[0].length;
    if (m[6] !== undefined) {
      problems.push(`stray '<' at ${m.index}: ${body.slice(m.index, m.index + 30)}`);
      continue;
    }
    if (m[5] !== undefined) {
      if (entity.test(m[5])) problems.push(`unescaped '&' in text: ${m[5].slice(0, 40)}`);
      if (stack.length === 0 && m[5].trim() !== "") problems.push(`text outside the root: ${m[5].slice(0, 40)}`);
      continue;
    }
    const [, closing, name, attrs, selfClosing] = m;
    const names = [...attrs!.matchAll(/([\w:-]+)="([^"]*)"/g)];
    const seen = new Set<string>();
    for (const [, attr, value] of names) {
      if (seen.has(attr!)) problems.push(`<${name}> repeats attribute ${attr}`);
      seen.add(attr!);
      if (entity.test(value!)) problems.push(`unescaped '&' in ${name}@${attr}`);
    }
    if (closing === "/") {
      const open = stack.pop();
      if (open !== name) problems.push(`</${name}> closes <${open}>`);
    } else if (selfClosing === "/") {
      if (stack.length === 0) roots++;
    } else {
      if (stack.length === 0) roots++;
      stack.push(name!);
    }
  }
  if (consumed !== body.length) problems.push("unparsed input");
  if (stack.length > 0) problems.push(`unclosed: ${stack.join(" > ")}`);
  if (roots !== 1) problems.push(`${roots} root elements`);
  return problems;
}

describe("the XML checker itself", () => {
  test("accepts well-formed and rejects broken documents", () => {
    expect(xmlProblems('<svg a="1"><g><text>a &amp; b</text></g><rect/></svg>')).toEqual([]);
    expect(xmlProblems("<svg><g></svg>").length).toBeGreaterThan(0);
    expect(xmlProblems("<svg><text>a & b</text></svg>").length).toBeGreaterThan(0);
    expect(xmlProblems('<svg a="1" a="2"></svg>').length).toBeGreaterThan(0);
    expect(xmlProblems("<svg></svg><svg></svg>").length).toBeGreaterThan(0);
    expect(xmlProblems("<svg><text>1 < 2</text></svg>").length).toBeGreaterThan(0);
  });
});

describe("lineChartSvg", () => {
  const svg = lineChartSvg({
    title: 'Throughput <vs> "write" ratio & more',
    xLabel: "write ratio (%)",
    yLabel: "throughput (M req/s)",
    xTicks: [0, 1, 5, 20, 100].map((v, i) => ({ value: i, label: `${v}%` })),
    series: [
      { name: "hermes-kv", points: [0, 1, 2, 3, 4].map((i) => ({ x: i, y: [6.6, 1.5, 0.83, 0.46, 0.15][i]! })) },
      {
        name: "other",
        points: [
          { x: 0, y: 1 },
          { x: 4, y: 0.1, label: "0.1 M" },
        ],
      },
    ],
    notes: ["measured on a 2-core machine"],
  });

  test("is well-formed XML with an svg root", () => {
    expect(xmlProblems(svg)).toEqual([]);
    expect(svg).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  });

  test("has both axis labels, the tick labels and the escaped title", () => {
    expect(svg).toContain('class="x-label"');
    expect(svg).toContain(">write ratio (%)</text>");
    expect(svg).toContain(">throughput (M req/s)</text>");
    for (const t of ["0%", "1%", "5%", "20%", "100%"]) expect(svg).toContain(`>${t}</text>`);
    expect(svg).toContain("Throughput &lt;vs&gt; &quot;write&quot; ratio &amp; more");
    expect(svg).not.toContain("<vs>");
  });

  test("draws one marker per point, one line per series, labels and the data in <desc>", () => {
    expect(svg.match(/<circle class="point"/g)?.length).toBe(7);
    expect(svg.match(/<polyline /g)?.length).toBe(2);
    expect(svg).toContain(">0.83</text>");
    expect(svg).toContain(">0.1 M</text>");
    expect(svg).toMatch(/<desc>[^<]*hermes-kv: \(0, 6.6\) \(1, 1.5\)/);
    expect(svg).toContain(">measured on a 2-core machine</text>");
  });

  test("points keep their order left to right and higher values sit higher", () => {
    const points = [...svg.matchAll(/<circle class="point" cx="([0-9.]+)" cy="([0-9.]+)"/g)]
      .slice(0, 5)
      .map((m) => [Number(m[1]), Number(m[2])]);
    for (let i = 1; i < points.length; i++) {
      expect(points[i]![0]!).toBeGreaterThan(points[i - 1]![0]!);
      expect(points[i]![1]!).toBeGreaterThan(points[i - 1]![1]!); // falling values: larger y in SVG
    }
  });
});

describe("barChartSvg", () => {
  const svg = barChartSvg({
    title: "HTTP req/s",
    yLabel: "req/s",
    categories: ["100% reads", "95% reads", "50% reads"],
    series: [
      { name: "etcd", values: [3930, 2862, 2541] },
      { name: "hermes-kv", values: [27573, 23518, 11208], labels: ["27.6k (7.0x)", "23.5k", "11.2k"] },
    ],
  });

  test("is well-formed, with one bar per value, category labels and the legend", () => {
    expect(xmlProblems(svg)).toEqual([]);
    expect(svg.match(/<rect class="bar"/g)?.length).toBe(6);
    for (const c of ["100% reads", "95% reads", "50% reads", "etcd", "hermes-kv", "req/s"])
      expect(svg).toContain(`>${c}</text>`);
    expect(svg).toContain(">27.6k (7.0x)</text>");
    expect(svg).toContain(">3930</text>");
  });

  test("bar heights are proportional to the values", () => {
    const heights = [...svg.matchAll(/<rect class="bar" [^>]*height="([0-9.]+)"/g)].map((m) => Number(m[1]));
    // Order: category by category, series inside: etcd 3930, hermes 27573, …
    expect(heights[1]! / heights[0]!).toBeCloseTo(27573 / 3930, 1);
  });
});

describe("helpers", () => {
  test("niceTicks gives round steps covering the range", () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 7.3)).toEqual([0, 2, 4, 6, 8]);
    const t = niceTicks(0, 123_456);
    expect(t[0]).toBe(0);
    expect(t[t.length - 1]!).toBeGreaterThanOrEqual(123_456);
    expect(niceTicks(5, 5).length).toBeGreaterThan(1);
  });

  test("escapeXml and formatNumber", () => {
    expect(escapeXml(`<a href="x">&'`)).toBe("&lt;a href=&quot;x&quot;&gt;&amp;&apos;");
    expect(formatNumber(1_234_567)).toBe("1.23M");
    expect(formatNumber(27_573)).toBe("27.6k");
    expect(formatNumber(3930)).toBe("3930");
    expect(formatNumber(0.8312)).toBe("0.831");
    expect(formatNumber(0)).toBe("0");
  });
});
