/** Tiny inline-SVG line charts for the HTML report: no scripts, no external assets. */

export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
  /** Draw as a step function (value holds until the next point). */
  step?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  xFormat?: (x: number) => string;
  yFormat?: (y: number) => string;
  yMax?: number;
  /** The x axis holds seconds: tick at 10 s, 1 min, 5 min, 1 h … */
  xTime?: boolean;
  /** Dashed horizontal reference lines (e.g. a target). */
  hLines?: Array<{ y: number; label: string }>;
}

export const PALETTE = [
  '#2563eb',
  '#dc2626',
  '#16a34a',
  '#9333ea',
  '#ea580c',
  '#0891b2',
  '#4b5563',
  '#ca8a04',
];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" axis maximum and tick step for values up to `max`. */
export function niceScale(max: number, ticks = 5): { max: number; step: number } {
  if (!(max > 0)) return { max: 1, step: 0.2 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  return { max: Math.ceil(max / step - 1e-9) * step, step };
}

const TIME_STEPS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

/** Ticks for a seconds axis, at steps a person would pick. */
export function timeScale(max: number, ticks = 6): { max: number; step: number } {
  if (!(max > 0)) return { max: 1, step: 1 };
  const step = TIME_STEPS.find((s) => max / s <= ticks) ?? Math.ceil(max / ticks / 86400) * 86400;
  return { max: Math.ceil(max / step - 1e-9) * step, step };
}

const fmt = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1));

export function lineChart(series: Series[], o: ChartOptions): string {
  const width = o.width ?? 720;
  const height = o.height ?? 300;
  const m = { left: 56, right: 16, top: 44, bottom: 44 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const all = series.flatMap((s) => s.points);
  const xMax = Math.max(0, ...all.map((p) => p[0]));
  const xs = o.xTime ? timeScale(xMax) : niceScale(xMax);
  const ys = niceScale(o.yMax ?? Math.max(0, ...all.map((p) => p[1]), ...(o.hLines ?? []).map((l) => l.y)));
  const X = (x: number) => m.left + (x / xs.max) * w;
  const Y = (y: number) => m.top + h - (y / ys.max) * h;
  const xf = o.xFormat ?? fmt;
  const yf = o.yFormat ?? fmt;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeXml(o.title)}">`,
  );
  parts.push(`<text x="${m.left}" y="16" font-size="13" font-weight="600">${escapeXml(o.title)}</text>`);
  for (let v = 0; v <= ys.max + 1e-9; v += ys.step) {
    parts.push(
      `<line x1="${m.left}" x2="${m.left + w}" y1="${Y(v).toFixed(1)}" y2="${Y(v).toFixed(1)}" stroke="#e5e7eb"/>`,
    );
    parts.push(
      `<text x="${m.left - 6}" y="${(Y(v) + 4).toFixed(1)}" font-size="11" text-anchor="end">${escapeXml(yf(v))}</text>`,
    );
  }
  for (let v = 0; v <= xs.max + 1e-9; v += xs.step) {
    parts.push(
      `<line x1="${X(v).toFixed(1)}" x2="${X(v).toFixed(1)}" y1="${m.top + h}" y2="${m.top + h + 4}" stroke="#6b7280"/>`,
    );
    parts.push(
      `<text x="${X(v).toFixed(1)}" y="${m.top + h + 17}" font-size="11" text-anchor="middle">${escapeXml(xf(v))}</text>`,
    );
  }
  parts.push(
    `<line x1="${m.left}" x2="${m.left + w}" y1="${m.top + h}" y2="${m.top + h}" stroke="#6b7280"/>`,
  );
  parts.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + h}" stroke="#6b7280"/>`);
  parts.push(
    `<text x="${m.left + w / 2}" y="${height - 6}" font-size="12" text-anchor="middle">${escapeXml(o.xLabel)}</text>`,
  );
  parts.push(
    `<text x="14" y="${m.top + h / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${m.top + h / 2})">${escapeXml(o.yLabel)}</text>`,
  );
  for (const l of o.hLines ?? []) {
    parts.push(
      `<line x1="${m.left}" x2="${m.left + w}" y1="${Y(l.y).toFixed(1)}" y2="${Y(l.y).toFixed(1)}" stroke="#111827" stroke-dasharray="5 4"/>`,
    );
    parts.push(
      `<text x="${m.left + w - 4}" y="${(Y(l.y) - 4).toFixed(1)}" font-size="11" text-anchor="end">${escapeXml(l.label)}</text>`,
    );
  }
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const pts: string[] = [];
    s.points.forEach(([x, y], j) => {
      if (s.step && j > 0) pts.push(`${X(x).toFixed(1)},${Y(s.points[j - 1]![1]).toFixed(1)}`);
      pts.push(`${X(x).toFixed(1)},${Y(y).toFixed(1)}`);
    });
    parts.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="1.8" points="${pts.join(' ')}"><title>${escapeXml(s.name)}</title></polyline>`,
    );
    const lx = m.left + (i % 4) * 170;
    const ly = 34 + Math.floor(i / 4) * 14;
    parts.push(`<rect x="${lx}" y="${ly - 8}" width="12" height="3" fill="${s.color}"/>`);
    parts.push(`<text x="${lx + 16}" y="${ly - 3}" font-size="11">${escapeXml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

/** Empirical CDF points of `values` (fraction of values ≤ x). */
export function cdfPoints(values: number[]): Array<[number, number]> {
  const s = [...values].sort((a, b) => a - b);
  const pts: Array<[number, number]> = [[0, 0]];
  s.forEach((v, i) => {
    pts.push([v, i / s.length]);
    pts.push([v, (i + 1) / s.length]);
  });
  return pts;
}
