// Analytics charts as inline SVG (no library): the 80/20 contribution curve, the
// customer pyramid and the RFM segments. Each chart has a <title>/<desc> and the
// figures as a table underneath, so screen readers and printouts get the numbers.
import { h } from './dom.js';
import { t, tc, fmtMoney, fmtNumber, fmtPercent } from '../i18n.js';

const INK = '#1a1a1a';
const GRID = '#b8c0c8';
const ACCENT = '#0b57a4';
const ACCENT2 = '#b3261e';

function svg(w, hgt, title, desc, ...children) {
  const id = `c${Math.random().toString(36).slice(2, 8)}`;
  return h('svg', { viewBox: `0 0 ${w} ${hgt}`, role: 'img', 'aria-labelledby': `${id}-t ${id}-d`,
    class: 'chart', preserveAspectRatio: 'xMidYMid meet' },
  h('title', { id: `${id}-t` }, title), h('desc', { id: `${id}-d` }, desc), ...children);
}

function text(x, y, s, attrs = {}) {
  return h('text', { x, y, fill: INK, 'font-size': 13, ...attrs }, s);
}

function table(head, rows, testid) {
  return h('details', { class: 'chart-table' }, h('summary', {}, t('show_data')),
    h('table', { testid }, h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

/** The 80/20 curve: x = top share of buyers, y = cumulative share of the amount. */
export function contributionChart(d) {
  const W = 420; const H = 300; const L = 48; const B = 40; const R = 24; const T = 12;
  const x = (p) => L + (p / 100) * (W - L - R);
  const y = (s) => T + (1 - s) * (H - T - B);
  const pts = [{ percent: 0, share: 0 }, ...(d.points || [])];
  const grid = [];
  for (const v of [0, 20, 40, 60, 80, 100]) {
    grid.push(h('line', { x1: x(v), x2: x(v), y1: y(0), y2: y(1), stroke: GRID, 'stroke-width': 1 }),
      text(x(v), H - B + 18, `${v}%`, { 'text-anchor': 'middle' }));
    grid.push(h('line', { x1: x(0), x2: x(100), y1: y(v / 100), y2: y(v / 100), stroke: GRID, 'stroke-width': 1 }),
      text(L - 6, y(v / 100) + 4, `${v}%`, { 'text-anchor': 'end' }));
  }
  const line = h('polyline', { fill: 'none', stroke: ACCENT, 'stroke-width': 3,
    points: pts.map((p) => `${x(p.percent)},${y(p.share)}`).join(' ') });
  const diag = h('line', { x1: x(0), y1: y(0), x2: x(100), y2: y(1), stroke: GRID, 'stroke-dasharray': '4 4' });
  const s20 = d.top_20_percent_share ?? 0;
  const mark = [h('line', { x1: x(20), x2: x(20), y1: y(0), y2: y(s20), stroke: ACCENT2, 'stroke-width': 2, 'stroke-dasharray': '6 3' }),
    h('circle', { cx: x(20), cy: y(s20), r: 5, fill: ACCENT2 }),
    text(x(20) + 8, y(s20) + 16, fmtPercent(s20), { 'font-weight': 700, fill: ACCENT2 })];
  const desc = t('contribution_desc', { p: '20%', s: fmtPercent(s20) });
  return h('figure', { class: 'chart-box', testid: 'chart-contribution' },
    svg(W, H, t('contribution'), desc, ...grid, diag, line, ...mark,
      text(W / 2, H - 4, t('share_of_customers'), { 'text-anchor': 'middle', 'font-size': 12 })),
    h('figcaption', {}, desc, ` · ${t('buyers')} ${fmtNumber(d.buyers)} · ${t('amount')} ${fmtMoney(d.total_fen)}`),
    table([t('share_of_customers'), t('customers_n'), t('share_of_amount')],
      (d.points || []).filter((p) => p.percent % 10 === 0).map((p) => [`${p.percent}%`, fmtNumber(p.customers), fmtPercent(p.share)]),
      'table-contribution'));
}

/** The pyramid: one centred bar per class, top level first, width by customers. */
export function pyramidChart(d) {
  const levels = d.levels || [];
  const W = 420; const row = 40; const H = Math.max(1, levels.length) * row + 10;
  const max = Math.max(1, ...levels.map((l) => l.customers));
  const bars = levels.map((l, i) => {
    const w = Math.max(72, ((W - 150) * l.customers) / max);
    const yy = 5 + i * row;
    return h('g', {},
      h('rect', { x: (W - 150 - w) / 2, y: yy, width: w, height: row - 8, rx: 3,
        fill: i === 0 ? ACCENT2 : ACCENT, opacity: 1 - i * (0.5 / Math.max(1, levels.length)) }),
      text((W - 150) / 2, yy + row / 2 + 5, tc('cls_', l.cls || 'none'),
        { 'text-anchor': 'middle', fill: '#fff', 'font-weight': 700 }),
      text(W - 144, yy + row / 2 + 5, `${fmtNumber(l.customers)} · ${fmtPercent(l.amount_share)}`));
  });
  const desc = levels.map((l) => `${tc('cls_', l.cls || 'none')}: ${l.customers}`).join('; ');
  return h('figure', { class: 'chart-box', testid: 'chart-pyramid' },
    svg(W, H, t('pyramid'), desc, ...bars),
    h('figcaption', {}, `${t('customers_n')} ${fmtNumber(d.customers)} · ${t('amount')} ${fmtMoney(d.amount_fen)}`),
    table([t('f_customer_class'), t('customers_n'), t('buyers'), t('amount'), t('share_of_amount')],
      levels.map((l) => [tc('cls_', l.cls || 'none'), fmtNumber(l.customers), fmtNumber(l.buyers),
        fmtMoney(l.amount_fen), fmtPercent(l.amount_share)]), 'table-pyramid'));
}

/** RFM segments: horizontal bars of customers per segment. */
export function rfmChart(d) {
  const segs = (d.segments || []).filter((s) => s.customers > 0);
  const W = 420; const row = 28; const LBL = 110; const H = Math.max(1, segs.length) * row + 6;
  const max = Math.max(1, ...segs.map((s) => s.customers));
  const bars = segs.map((s, i) => {
    const yy = 3 + i * row;
    const w = ((W - LBL - 90) * s.customers) / max;
    return h('g', {},
      text(LBL - 6, yy + row / 2 + 4, tc('seg_', s.segment), { 'text-anchor': 'end' }),
      h('rect', { x: LBL, y: yy + 3, width: Math.max(2, w), height: row - 8, rx: 2, fill: ACCENT }),
      text(LBL + w + 6, yy + row / 2 + 4, `${fmtNumber(s.customers)} (${fmtPercent(s.share)})`));
  });
  const desc = segs.map((s) => `${tc('seg_', s.segment)}: ${s.customers}`).join('; ');
  return h('figure', { class: 'chart-box', testid: 'chart-rfm' },
    svg(W, H, t('rfm'), desc, ...bars),
    h('figcaption', {}, `${t('customers_n')} ${fmtNumber(d.customers)}`),
    table([t('rfm'), t('customers_n'), t('share_of_customers'), t('amount')],
      segs.map((s) => [tc('seg_', s.segment), fmtNumber(s.customers), fmtPercent(s.share), fmtMoney(s.monetary_fen)]),
      'table-rfm'));
}
