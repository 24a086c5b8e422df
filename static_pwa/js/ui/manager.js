// Manager and HQ screens, online only (REST with the session's bearer token):
// approvals inbox, complaint deadlines, conflicts to review, sync health, reports and
// analytics charts. Nothing fetched here is stored on the device.
import * as api from './api.js';
import { h, field, onSubmit, screenHeader, toast, badge, dl } from './dom.js';
import { Screen, define } from './screen.js';
import { contributionChart, pyramidChart, rfmChart } from './charts.js';
import { t, tc, fmtDateTime, fmtMoney, fmtName, fmtNumber, fmtPercent } from '../i18n.js';

const TABS = ['approvals', 'deadlines', 'conflicts', 'sync', 'reports', 'analytics'];
const TAB_LABEL = { approvals: 'approvals', deadlines: 'deadlines', conflicts: 'conflicts',
  sync: 'sync_health', reports: 'reports', analytics: 'analytics' };
const FINISHED = ['declined', 'closed', 'return_visited'];

function problem(e) {
  if (e?.status === 0) return h('p', { class: 'panel warn', role: 'status', testid: 'online-only' }, t('online_only'));
  if (e?.status === 403) return h('p', { class: 'panel warn', role: 'status', testid: 'forbidden' }, t('forbidden'), ` (${e.message})`);
  if (e?.status === 401) return h('p', { class: 'panel warn', role: 'alert' }, t('session_expired'));
  return h('p', { class: 'panel error', role: 'alert' }, t('error', { e: e?.message || String(e) }));
}

class ManagerScreen extends Screen {
  async render() {
    const tab = TABS.includes(this.params.tab) ? this.params.tab : 'approvals';
    const nav = h('nav', { class: 'tabs', 'aria-label': t('manager') }, TABS.map((k) =>
      h('a', { href: `#/manager/${k}`, class: `tab ${k === tab ? 'active' : ''}`, testid: `manager-tab-${k}`,
        'aria-current': k === tab ? 'page' : null }, t(TAB_LABEL[k]))));
    let body;
    if (!navigator.onLine) body = problem({ status: 0 });
    else {
      try { body = await this[tab](); } catch (e) { console.error(e); body = problem(e); }
    }
    return [screenHeader(t('manager')), nav, h('div', { class: 'tab-body', testid: `manager-${tab}` }, body)];
  }

  async approvals() {
    const [access, comp] = await Promise.all([
      api.rest('/api/v1/access-requests', { query: { to_approve: true, limit: 100 } }),
      api.rest('/api/v1/complaints', { query: { compensation_status: 'pending', limit: 100 } })
        .catch(() => ({ items: [] }))]);
    const items = access?.items || [];
    const comps = comp?.items || [];
    if (!items.length && !comps.length) return h('p', { class: 'empty', testid: 'no-approvals' }, t('no_approvals'));
    const decide = (path, verb) => async (v) => {
      await api.rest(`${path}/${verb}`, { method: 'POST', body: v.note ? { note: v.note } : undefined });
      toast(t('saved_online'));
      this.load();
    };
    const cards = items.map((r) => {
      const form = h('form', { class: 'row wrap' },
        field('note', t('decision_note'), { testid: 'approval-note' }),
        h('button', { type: 'submit', class: 'btn primary', testid: 'approval-approve', value: 'approve' }, t('approve')),
        h('button', { type: 'submit', class: 'btn danger', testid: 'approval-decline', value: 'decline' }, t('decline')));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const verb = e.submitter?.value || 'approve';
        const note = form.elements.note.value.trim();
        try { await decide(`/api/v1/access-requests/${r.id}`, verb)({ note }); } catch (err) {
          toast(t('error', { e: err.message }), 'bad');
        }
      });
      return h('li', { class: 'card', testid: 'approval-item', 'data-id': r.id },
        h('span', { class: 'title' }, tc('ak_', r.kind), ' · ', r.purpose, ' ', badge(tc('st_', r.status), 'warn')),
        h('span', { class: 'sub' }, r.reason),
        h('span', { class: 'sub' }, t('requested_at'), ' ', fmtDateTime(r.requested_at), ' · ',
          r.subject || r.customer_id || r.department || r.object_branch || '', ' · ', `${r.hours} h`),
        form);
    });
    const compCards = comps.map((c) => h('li', { class: 'card', testid: 'compensation-item', 'data-id': c.id },
      h('span', { class: 'title' }, t('act_compensation'), ' · ', c.number, ' · ', fmtMoney(c.compensation_fen)),
      h('span', { class: 'sub' }, fmtName(c.complainant), ' · ', tc('demand_', c.demand)),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'btn primary', testid: 'compensation-approve',
          onclick: () => decide(`/api/v1/complaints/${c.id}/compensation`, 'approve')({}).catch((e) => toast(e.message, 'bad')) }, t('approve')),
        h('button', { type: 'button', class: 'btn danger', testid: 'compensation-reject',
          onclick: () => decide(`/api/v1/complaints/${c.id}/compensation`, 'reject')({}).catch((e) => toast(e.message, 'bad')) }, t('decline')))));
    return h('ul', { class: 'cards', testid: 'approval-list' }, cards, compCards);
  }

  async deadlines() {
    const overdueOnly = this.params.query?.get('overdue') === '1';
    const page = await api.rest('/api/v1/complaints', { query: { limit: 200, overdue: overdueOnly ? true : null } });
    const rows = (page?.items || []).filter((c) => !FINISHED.includes(c.status))
      .sort((a, b) => String(a.deadline_at).localeCompare(String(b.deadline_at)));
    const toggle = h('label', { class: 'check' }, h('input', { type: 'checkbox', checked: overdueOnly,
      testid: 'deadlines-overdue-only', onchange: (e) => { location.hash = `#/manager/deadlines${e.target.checked ? '?overdue=1' : ''}`; } }),
    ' ', t('only_overdue'));
    const table = h('table', { class: 'grid', testid: 'deadline-table' },
      h('thead', {}, h('tr', {}, [t('complaint'), t('deadline'), t('status'), t('complainant'), t('f_branch')].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((c) => h('tr', { class: c.overdue ? 'bad' : '', testid: 'deadline-row', 'data-id': c.id },
        h('td', {}, h('a', { href: `#/complaint/${c.id}` }, c.number)),
        h('td', {}, fmtDateTime(c.deadline_at), ' ', c.overdue ? badge(t('overdue'), 'bad') : null,
          c.hq_overdue ? badge(t('hq_overdue'), 'bad') : null),
        h('td', {}, tc('st_', c.status)), h('td', {}, fmtName(c.complainant)),
        h('td', {}, c.branch || '—')))));
    return [toggle, rows.length ? h('div', { class: 'scroll' }, table) : h('p', { class: 'empty' }, t('no_complaints'))];
  }

  async conflicts() {
    const page = await api.rest('/api/v1/conflicts', { query: { status: 'open', limit: 100 } });
    const rows = page?.items || [];
    if (!rows.length) return h('p', { class: 'empty', testid: 'no-conflicts' }, t('no_conflicts'));
    const show = (v) => (v == null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v));
    return h('ul', { class: 'cards', testid: 'conflict-list' }, rows.map((c) => h('li', { class: 'card', testid: 'conflict-item', 'data-id': c.id },
      h('span', { class: 'title' }, `${c.table_name}.${c.column_name}`, ' ', badge(c.policy, 'muted'), c.branch ? ` · ${c.branch}` : ''),
      dl([[t('winner'), [show(c.winner_value), ' · ', c.winner_user || c.winner_node]],
        [t('loser'), [show(c.loser_value), ' · ', c.loser_user || c.loser_node]],
        [t('requested_at'), fmtDateTime(c.created_at)]]),
      h('div', { class: 'row' }, ['winner', 'loser'].map((use) => h('button', { type: 'button',
        class: `btn ${use === 'winner' ? 'primary' : ''}`, testid: `conflict-resolve-${use}`,
        onclick: async () => {
          try {
            await api.rest(`/api/v1/conflicts/${c.id}/resolve`, { method: 'POST', body: { use } });
            toast(t('saved_online')); this.load();
          } catch (e) { toast(t('error', { e: e.message }), 'bad'); }
        } }, t(use === 'winner' ? 'keep_winner' : 'use_loser')))))));
  }

  async sync() {
    const hlth = await api.rest('/api/v1/sync/health');
    const peers = hlth?.peers || [];
    return h('div', { class: 'scroll' }, h('table', { class: 'grid', testid: 'sync-health-table' },
      h('thead', {}, h('tr', {}, [t('peer'), t('f_branch'), t('last_contact'), t('waiting'), t('quarantined'),
        t('clock_offset'), t('last_error')].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, peers.map((p) => h('tr', { class: p.last_error || p.quarantined ? 'bad' : '', testid: 'sync-health-row' },
        h('td', {}, p.name, ' ', badge(p.kind, 'muted'), p.revoked ? badge(t('st_revoked'), 'bad') : null),
        h('td', {}, p.branch || '—'), h('td', {}, fmtDateTime(p.last_contact)),
        h('td', {}, fmtNumber(p.waiting_outbound)), h('td', {}, fmtNumber(p.quarantined)),
        h('td', {}, p.clock_offset_ms == null ? '—' : `${p.clock_offset_ms} ms`),
        h('td', {}, p.last_error || '—'))))));
  }

  async reports() {
    const q = this.params.query;
    const kind = q?.get('kind') || 'complaints';
    const now = new Date(Date.now() + 8 * 3600e3);
    const period = q?.get('period') || `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
    const form = h('form', { class: 'row wrap', testid: 'report-form' },
      field('kind', t('report_kind'), { options: ['complaints', 'sla', 'visits', 'tickets', 'reps', 'sync_health']
        .map((k) => [k, t(`rk_${k}`)]), value: kind, testid: 'report-kind' }),
      field('period', t('period'), { type: 'month', value: period, required: true, testid: 'report-period' }),
      h('button', { type: 'submit', class: 'btn primary', testid: 'report-show' }, t('show')));
    onSubmit(form, async (v) => { location.hash = `#/manager/reports?kind=${v.kind}&period=${v.period}`; });
    let out;
    try {
      const r = await api.rest(`/api/v1/reports/${kind}`, { query: { period } });
      out = reportView(r);
    } catch (e) { out = problem(e); }
    return [form, out];
  }

  async analytics() {
    const [c, p, r] = await Promise.allSettled([
      api.rest('/api/v1/analytics/contribution'), api.rest('/api/v1/analytics/pyramid'),
      api.rest('/api/v1/analytics/rfm', { query: { limit: 1 } })]);
    const part = (res, title, draw) => h('section', { class: 'panel' }, h('h2', {}, t(title)),
      res.status === 'fulfilled' ? draw(res.value) : problem(res.reason));
    return h('div', { class: 'chart-grid' }, part(c, 'contribution', contributionChart),
      part(p, 'pyramid', pyramidChart), part(r, 'rfm', rfmChart));
  }
}

/** A report figure's label: translated when known, else the key made readable. */
function label(k) {
  const s = t(`rkey_${k}`);
  return s === `rkey_${k}` ? k.replace(/_/g, ' ') : s;
}

const SUB = ['ch_', 'demand_', 'st_', 'kind_', 'lc_', 'source_'];
function subLabel(k) {
  for (const p of SUB) { const s = tc(p, k); if (s !== k) return s; }
  return k;
}

function cell(k, v) {
  if (v == null) return '—';
  if (typeof v === 'object' && !Array.isArray(v)) {
    return Object.entries(v).map(([sk, sv]) => `${subLabel(sk)} ${typeof sv === 'number' ? fmtNumber(sv) : JSON.stringify(sv)}`).join(' · ');
  }
  if (typeof v === 'number') {
    if (/_fen$/.test(k)) return fmtMoney(v);
    if (/(rate|share)$/.test(k)) return fmtPercent(v);
    return fmtNumber(v);
  }
  if (typeof v === 'boolean') return v ? t('yes') : t('no');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function reportView(r) {
  const total = r?.total || {};
  const branches = r?.branches || [];
  const keys = Object.keys(total);
  return h('section', { class: 'panel', testid: 'report-view' },
    h('h2', {}, tc('rk_', r.kind), ' · ', r.period, r.final === false ? ' *' : ''),
    dl(keys.map((k) => [label(k), cell(k, total[k])])),
    branches.length ? [h('h3', {}, t('by_branch')), h('div', { class: 'scroll' },
      h('table', { class: 'grid', testid: 'report-branches' },
        h('thead', {}, h('tr', {}, [t('f_branch'), ...keys.map(label)].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, branches.map((b) => h('tr', {}, h('td', {}, b.branch || '—'),
          keys.map((k) => h('td', {}, cell(k, b[k]))))))))] : null);
}

define('bl-manager', ManagerScreen);
