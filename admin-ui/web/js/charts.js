// Small charts drawn as SVG and HTML, no library: a timeline and bar lists.

import {h, svg} from './dom.js';

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * timeline(points, series): points are {t, ...values}; series are
 * {key, name, kind: "bar" | "line", cls}. Answers a figure with an SVG and a
 * legend; the SVG scales to its container's width.
 */
export function timeline(points, series, {title = '', height = 220} = {}) {
  const W = 800, H = height, L = 44, R = 12, T = 12, B = 28;
  const iw = W - L - R, ih = H - T - B;
  const n = points.length;
  const max = niceMax(Math.max(1, ...points.flatMap((p) => series.map((s) => Number(p[s.key]) || 0))));
  const x = (i) => L + (n <= 1 ? iw / 2 : (i / (n - 1)) * iw);
  const y = (v) => T + ih - (v / max) * ih;
  const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', preserveAspectRatio: 'none'});
  root.append(svg('title', null, title));
  // grid and y labels
  for (const f of [0, 0.5, 1]) {
    const v = max * f;
    root.append(svg('line', {x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid'}));
    root.append(svg('text', {x: L - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end'}, String(Math.round(v))));
  }
  // x labels: about five times
  const step = Math.max(1, Math.ceil(n / 5));
  for (let i = 0; i < n; i += step) {
    const d = new Date(points[i].t);
    const label = isNaN(d) ? '' : d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
    root.append(svg('text', {x: x(i), y: H - 8, class: 'axis', 'text-anchor': 'middle'}, label));
  }
  const bw = Math.max(1, Math.min(18, (iw / Math.max(1, n)) * 0.7));
  for (const s of series.filter((s) => s.kind === 'bar')) {
    const g = svg('g', {class: `bars ${s.cls}`});
    points.forEach((p, i) => {
      const v = Number(p[s.key]) || 0;
      if (v > 0) g.append(svg('rect', {x: x(i) - bw / 2, y: y(v), width: bw, height: T + ih - y(v)}));
    });
    root.append(g);
  }
  for (const s of series.filter((s) => s.kind !== 'bar')) {
    const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(Number(p[s.key]) || 0).toFixed(1)}`).join('');
    if (d) root.append(svg('path', {d, class: `line ${s.cls}`, fill: 'none', 'vector-effect': 'non-scaling-stroke'}));
  }
  const legend = h('ul', {class: 'legend'}, series.map((s) => h('li', {class: s.cls}, h('span', {class: 'swatch', 'aria-hidden': 'true'}), s.name)));
  const fig = h('figure', {class: 'chart-fig'}, root, legend);
  root.setAttribute('aria-label', `${title}: ${n} minutes, ` + series.map((s) => {
    const vals = points.map((p) => Number(p[s.key]) || 0);
    return `${s.name} up to ${Math.max(0, ...vals)}`;
  }).join(', '));
  return fig;
}

/**
 * bars(rows): rows are {label, value, max?, text}; horizontal bars in HTML,
 * readable on any width.
 */
export function bars(rows, {max, cls = ''} = {}) {
  const top = max ?? Math.max(0, ...rows.map((r) => r.value));
  return h('ul', {class: `hbars ${cls}`}, rows.map((r) => {
    const pct = top > 0 ? Math.max(0, Math.min(100, (r.value / top) * 100)) : 0;
    return h('li', null,
      h('span', {class: 'label', title: r.label}, r.label),
      h('span', {class: 'track', 'aria-hidden': 'true'}, h('span', {class: 'fill', style: {width: `${pct}%`}})),
      h('span', {class: 'value'}, r.text ?? String(r.value)));
  }));
}
