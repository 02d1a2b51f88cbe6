// A small SVG chart writer for the benchmark figures (scripts/plots.ts): a line chart (throughput
// against write ratio, like the Hermes paper's figure) and a grouped bar chart (hermes-kv beside
// etcd). Plain strings, no dependency. Every number shown is also written in the figure's <desc>,
// so a figure carries the data it was drawn from.

export interface Point {
  x: number;
  y: number;
  /** Shown next to the point; default: the y value. */
  label?: string;
}

export interface LineSeries {
  name: string;
  points: Point[];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  /** Ticks of the x axis; default: nice round numbers over the points' range. */
  xTicks?: { value: number; label: string }[];
  /** Lines of small print under the plot (machine, command, date). */
  notes?: string[];
  width?: number;
  height?: number;
}

export interface BarSeries {
  name: string;
  values: number[];
  /** Shown on top of each bar; default: the value, formatted. */
  labels?: string[];
}

export interface BarChart {
  title: string;
  yLabel: string;
  categories: string[];
  series: BarSeries[];
  notes?: string[];
  width?: number;
  height?: number;
}

/** Colours of the series, in order (colour-blind safe: Okabe-Ito). */
export const palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"];

const defaultWidth = 800;
const defaultHeight = 460;
/** About this many intervals on the value axis. */
const yTickCount = 6;

const font = 'font-family="DejaVu Sans, Arial, Helvetica, sans-serif"';

export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!,
  );
}

/** A number as short as it stays readable: 1234567 -> "1.23M", 0.8312 -> "0.831". */
export function formatNumber(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a === 0) return "0";
  if (a >= 100) return String(Math.round(v));
  return `${+v.toPrecision(3)}`;
}

/** About `count` round tick values (1, 2, 5 x 10^n steps) covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0];
  if (max <= min) max = min + (min === 0 ? 1 : Math.abs(min));
  const raw = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const first = Math.floor(min / step) * step;
  const ticks: number[] = [];
  for (let v = first; v <= max + step * 1e-9 && ticks.length < 50; v += step) ticks.push(+v.toPrecision(12));
  if (ticks[ticks.length - 1]! < max) ticks.push(+(ticks[ticks.length - 1]! + step).toPrecision(12));
  return ticks;
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function frameOf(width: number, height: number, notes: number, legendRows: number): Frame {
  return { width, height, left: 80, right: width - 24, top: 48 + legendRows * 18, bottom: height - 58 - notes * 15 };
}

function header(f: Frame, title: string, desc: string): string[] {
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}">`,
    `<title>${escapeXml(title)}</title>`,
    `<desc>${escapeXml(desc)}</desc>`,
    `<rect x="0" y="0" width="${f.width}" height="${f.height}" fill="#ffffff"/>`,
    `<text x="${f.width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold" ${font}>${escapeXml(title)}</text>`,
  ];
}

function yAxis(f: Frame, ticks: number[], yOf: (v: number) => number, label: string): string[] {
  const out: string[] = [];
  for (const t of ticks) {
    const y = yOf(t).toFixed(1);
    out.push(`<line x1="${f.left}" y1="${y}" x2="${f.right}" y2="${y}" stroke="#dddddd" stroke-width="1"/>`);
    out.push(
      `<text x="${f.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" font-size="11" ${font}>${escapeXml(formatNumber(t))}</text>`,
    );
  }
  const mid = ((f.top + f.bottom) / 2).toFixed(1);
  out.push(
    `<text class="y-label" x="18" y="${mid}" text-anchor="middle" font-size="13" transform="rotate(-90 18 ${mid})" ${font}>${escapeXml(label)}</text>`,
  );
  out.push(`<line x1="${f.left}" y1="${f.top}" x2="${f.left}" y2="${f.bottom}" stroke="#333333" stroke-width="1"/>`);
  out.push(
    `<line x1="${f.left}" y1="${f.bottom}" x2="${f.right}" y2="${f.bottom}" stroke="#333333" stroke-width="1"/>`,
  );
  return out;
}

function legend(f: Frame, names: string[]): string[] {
  const out: string[] = [];
  names.forEach((name, i) => {
    const y = 40 + i * 18;
    out.push(`<rect x="${f.left + 8}" y="${y - 9}" width="14" height="10" fill="${palette[i % palette.length]}"/>`);
    out.push(`<text x="${f.left + 28}" y="${y}" font-size="12" ${font}>${escapeXml(name)}</text>`);
  });
  return out;
}

/** Average width of a character of the 10 px small print, for wrapping it. */
const noteCharPx = 5.8;

/** Notes wrapped at word boundaries to fit the figure's width. */
export function wrapNotes(notes: string[], width: number): string[] {
  const perLine = Math.max(20, Math.floor((width - 90) / noteCharPx));
  const lines: string[] = [];
  for (const note of notes) {
    let line = "";
    for (const word of note.split(" ")) {
      if (line !== "" && line.length + 1 + word.length > perLine) {
        lines.push(line);
        line = word;
      } else line = line === "" ? word : `${line} ${word}`;
    }
    if (line !== "") lines.push(line);
  }
  return lines;
}

function notesOf(f: Frame, notes: string[]): string[] {
  return notes.map(
    (note, i) =>
      `<text x="${f.left}" y="${f.bottom + 46 + i * 15}" font-size="10" fill="#555555" ${font}>${escapeXml(note)}</text>`,
  );
}

export function lineChartSvg(chart: LineChart): string {
  const width = chart.width ?? defaultWidth;
  const notes = wrapNotes(chart.notes ?? [], width);
  const f = frameOf(width, chart.height ?? defaultHeight, notes.length, chart.series.length);
  const all = chart.series.flatMap((s) => s.points);
  const xs = [...all.map((p) => p.x), ...(chart.xTicks ?? []).map((t) => t.value)];
  let xMin = Math.min(...xs);
  let xMax = Math.max(...xs);
  if (!(xMax > xMin)) {
    xMin -= 1;
    xMax += 1;
  }
  const yTicks = niceTicks(0, Math.max(0, ...all.map((p) => p.y)) * 1.1 || 1, yTickCount);
  const yMax = yTicks[yTicks.length - 1]!;
  const pad = 24;
  const xOf = (v: number): number => f.left + pad + ((v - xMin) / (xMax - xMin)) * (f.right - f.left - 2 * pad);
  const yOf = (v: number): number => f.bottom - (v / yMax) * (f.bottom - f.top);
  const desc = chart.series.map((s) => `${s.name}: ${s.points.map((p) => `(${p.x}, ${p.y})`).join(" ")}`).join("; ");
  const out = header(f, chart.title, `${chart.xLabel} vs ${chart.yLabel}. ${desc}`);
  out.push(...yAxis(f, yTicks, yOf, chart.yLabel));
  const xTicks = chart.xTicks ?? niceTicks(xMin, xMax).map((v) => ({ value: v, label: formatNumber(v) }));
  for (const t of xTicks) {
    const x = xOf(t.value).toFixed(1);
    out.push(`<line x1="${x}" y1="${f.bottom}" x2="${x}" y2="${f.bottom + 5}" stroke="#333333" stroke-width="1"/>`);
    out.push(
      `<text x="${x}" y="${f.bottom + 18}" text-anchor="middle" font-size="11" ${font}>${escapeXml(t.label)}</text>`,
    );
  }
  out.push(
    `<text class="x-label" x="${((f.left + f.right) / 2).toFixed(1)}" y="${f.bottom + 36}" text-anchor="middle" font-size="13" ${font}>${escapeXml(chart.xLabel)}</text>`,
  );
  chart.series.forEach((s, i) => {
    const colour = palette[i % palette.length];
    const path = s.points.map((p) => `${xOf(p.x).toFixed(1)},${yOf(p.y).toFixed(1)}`).join(" ");
    out.push(`<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    for (const p of s.points) {
      const x = xOf(p.x).toFixed(1);
      const y = yOf(p.y).toFixed(1);
      out.push(`<circle class="point" cx="${x}" cy="${y}" r="4" fill="${colour}"/>`);
      out.push(
        `<text x="${x}" y="${(yOf(p.y) - 9).toFixed(1)}" text-anchor="middle" font-size="11" ${font}>${escapeXml(p.label ?? formatNumber(p.y))}</text>`,
      );
    }
  });
  out.push(
    ...legend(
      f,
      chart.series.map((s) => s.name),
    ),
  );
  out.push(...notesOf(f, notes));
  out.push(`</svg>`);
  return `${out.join("\n")}\n`;
}

export function barChartSvg(chart: BarChart): string {
  const width = chart.width ?? defaultWidth;
  const notes = wrapNotes(chart.notes ?? [], width);
  const f = frameOf(width, chart.height ?? defaultHeight, notes.length, chart.series.length);
  const values = chart.series.flatMap((s) => s.values);
  const yTicks = niceTicks(0, Math.max(0, ...values) * 1.1 || 1, yTickCount);
  const yMax = yTicks[yTicks.length - 1]!;
  const yOf = (v: number): number => f.bottom - (v / yMax) * (f.bottom - f.top);
  const desc = chart.series
    .map((s) => `${s.name}: ${chart.categories.map((c, i) => `${c} ${s.values[i]}`).join(", ")}`)
    .join("; ");
  const out = header(f, chart.title, `${chart.yLabel}. ${desc}`);
  out.push(...yAxis(f, yTicks, yOf, chart.yLabel));
  const groupWidth = (f.right - f.left) / Math.max(1, chart.categories.length);
  const barWidth = Math.min(60, (groupWidth * 0.7) / Math.max(1, chart.series.length));
  chart.categories.forEach((category, c) => {
    const groupLeft = f.left + c * groupWidth + (groupWidth - barWidth * chart.series.length) / 2;
    chart.series.forEach((s, i) => {
      const v = s.values[c] ?? 0;
      const x = groupLeft + i * barWidth;
      const y = yOf(v);
      out.push(
        `<rect class="bar" x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(f.bottom - y).toFixed(1)}" fill="${palette[i % palette.length]}"/>`,
      );
      const label = s.labels?.[c] ?? formatNumber(v);
      out.push(
        `<text x="${(x + barWidth / 2 - 1).toFixed(1)}" y="${(y - 4).toFixed(1)}" text-anchor="middle" font-size="10" ${font}>${escapeXml(label)}</text>`,
      );
    });
    out.push(
      `<text x="${(f.left + (c + 0.5) * groupWidth).toFixed(1)}" y="${f.bottom + 18}" text-anchor="middle" font-size="12" ${font}>${escapeXml(category)}</text>`,
    );
  });
  out.push(
    ...legend(
      f,
      chart.series.map((s) => s.name),
    ),
  );
  out.push(...notesOf(f, notes));
  out.push(`</svg>`);
  return `${out.join("\n")}\n`;
}
