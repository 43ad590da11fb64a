/**
 * A small SVG writer for the bench chart: per configuration, a bar for the median messages/s and
 * one for the median reply p99, each with a whisker from min to max. No dependencies, no
 * network: plain strings, escaped.
 * @module
 */

/** One bar group of the chart. */
export interface ChartBar {
  readonly label: string;
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

/** One panel: a metric with one bar per configuration. */
export interface ChartPanel {
  readonly title: string;
  readonly unit: string;
  readonly bars: readonly ChartBar[];
}

/** Escapes text for SVG content and attributes. */
export function escapeXml(s: string): string {
  return s.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!,
  );
}

/** A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `v`. */
export function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const PANEL_W = 460;
const PANEL_H = 300;
const MARGIN = { top: 40, right: 48, bottom: 96, left: 64 };
const COLORS = ['#3b6ea8', '#d07a2d', '#5a9a54', '#9b59b6', '#c0392b', '#7f8c8d', '#16a085', '#8e6c3a'];

function num(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function panel(p: ChartPanel, x0: number): string {
  const w = PANEL_W - MARGIN.left - MARGIN.right;
  const h = PANEL_H - MARGIN.top - MARGIN.bottom;
  const top = niceCeil(Math.max(0, ...p.bars.map((b) => b.max)));
  const y = (v: number): number => MARGIN.top + h - (h * Math.max(0, v)) / top;
  const out: string[] = [];
  out.push(`<g transform="translate(${x0},0)">`);
  out.push(
    `<text x="${PANEL_W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(p.title)} (${escapeXml(p.unit)})</text>`,
  );
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    const yy = y(v).toFixed(1);
    out.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + w}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`,
      `<text x="${MARGIN.left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle" font-size="11">${num(v)}</text>`,
    );
  }
  const n = Math.max(1, p.bars.length);
  const slot = w / n;
  const bw = Math.min(48, slot * 0.6);
  p.bars.forEach((b, i) => {
    const cx = MARGIN.left + slot * i + slot / 2;
    const color = COLORS[i % COLORS.length]!;
    const yb = y(b.median);
    out.push(
      `<rect x="${(cx - bw / 2).toFixed(1)}" y="${yb.toFixed(1)}" width="${bw.toFixed(1)}" height="${(MARGIN.top + h - yb).toFixed(1)}" fill="${color}"><title>${escapeXml(`${b.label}: ${num(b.median)} ${p.unit} (${num(b.min)}-${num(b.max)})`)}</title></rect>`,
      `<line x1="${cx.toFixed(1)}" x2="${cx.toFixed(1)}" y1="${y(b.min).toFixed(1)}" y2="${y(b.max).toFixed(1)}" stroke="#222"/>`,
      `<line x1="${(cx - 6).toFixed(1)}" x2="${(cx + 6).toFixed(1)}" y1="${y(b.min).toFixed(1)}" y2="${y(b.min).toFixed(1)}" stroke="#222"/>`,
      `<line x1="${(cx - 6).toFixed(1)}" x2="${(cx + 6).toFixed(1)}" y1="${y(b.max).toFixed(1)}" y2="${y(b.max).toFixed(1)}" stroke="#222"/>`,
      `<text x="${cx.toFixed(1)}" y="${(Math.min(yb, y(b.max)) - 6).toFixed(1)}" text-anchor="middle" font-size="11">${num(Math.round(b.median))}</text>`,
      `<text transform="translate(${cx.toFixed(1)},${MARGIN.top + h + 12}) rotate(35)" font-size="11">${escapeXml(b.label)}</text>`,
    );
  });
  out.push(
    `<line x1="${MARGIN.left}" x2="${MARGIN.left + w}" y1="${MARGIN.top + h}" y2="${MARGIN.top + h}" stroke="#222"/>`,
    '</g>',
  );
  return out.join('\n');
}

/**
 * An SVG document with the panels side by side and a caption under them.
 *
 * @example
 * ```ts
 * writeFileSync('chart.svg', barChart([{ title: 'msgs/s', unit: '1/s', bars }], 'median, whiskers min-max'));
 * ```
 */
export function barChart(panels: readonly ChartPanel[], caption: string): string {
  const width = PANEL_W * Math.max(1, panels.length);
  const height = PANEL_H + 24;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...panels.map((p, i) => panel(p, i * PANEL_W)),
    `<text x="8" y="${height - 8}" font-size="11" fill="#555">${escapeXml(caption)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
