// The customer search list and the archive card (客户档案).
import * as api from './api.js';
import { h, add, badge, pendingBadge, conflictBadge, screenHeader, dl } from './dom.js';
import { Screen, define } from './screen.js';
import { t, tc, fmtDate, fmtDateTime, fmtMobile, fmtName, fmtMoney, fmtNumber } from '../i18n.js';

/** A small padlock: the value is masked for this role. */
export function lockIcon() {
  return h('svg', { class: 'lock', viewBox: '0 0 24 24', width: 16, height: 16, 'aria-hidden': 'true',
    fill: 'none', stroke: 'currentColor', 'stroke-width': 2.2 },
  h('rect', { x: 5, y: 11, width: 14, height: 10, rx: 2 }), h('path', { d: 'M8 11V7a4 4 0 0 1 8 0v4' }));
}

/** A stored value as shown: tokens and masks are marked "not readable". */
export function shown(value, format = (v) => v) {
  if (value == null || value === '') return '—';
  const s = String(value);
  if (s.startsWith('§')) return h('span', { class: 'masked', title: t('masked') }, lockIcon(), t('masked'));
  if (s.includes('****')) {
    return h('span', { class: 'masked', title: t('masked') }, lockIcon(), format(s),
      h('span', { class: 'sr-only' }, `（${t('masked')}）`));
  }
  return format(value);
}

function rowId(r) { return r?.id ?? r?.values?.id; }
function rowValues(r) { return r?.values ? { ...r.values, ...r } : r; }

/** Badges for one record: not yet synced, conflict. */
export async function recordBadges(tbl, row) {
  const id = rowId(row);
  const pending = row?.pending ?? await api.isPending(tbl, id);
  const conf = row?.conflicts ?? await api.conflicts(tbl, id);
  return [pending ? pendingBadge() : null,
    (Array.isArray(conf) ? conf.length : conf) ? conflictBadge() : null].filter(Boolean);
}

class CustomerList extends Screen {
  async render() {
    const q = sessionStorage.getItem('bl.q') || '';
    const input = h('input', { type: 'search', id: 'customer-search', name: 'q', value: q,
      testid: 'customer-search', placeholder: t('search_placeholder'), autocomplete: 'off',
      enterkeyhint: 'search', });
    const results = h('div', { class: 'results', testid: 'customer-results', 'aria-live': 'polite' });
    let seq = 0;
    const run = async () => {
      const mine = ++seq;
      sessionStorage.setItem('bl.q', input.value);
      const rows = await api.searchCustomers(input.value.trim(), { limit: 50 });
      if (mine !== seq) return;
      results.replaceChildren(...(await this.items(rows || [])));
    };
    let timer;
    input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(run, 180); });
    const form = h('form', { role: 'search', class: 'search', testid: 'search-form',
      onsubmit: (e) => { e.preventDefault(); clearTimeout(timer); run(); } },
    h('label', { for: 'customer-search' }, t('search'), h('span', { class: 'hint-inline' }, `（${t('search_hint')}）`)),
    h('div', { class: 'row' }, input,
      h('button', { type: 'submit', class: 'btn primary', testid: 'search-submit' }, t('search_go'))),
    );
    run().catch((e) => results.replaceChildren(h('p', { class: 'form-error', role: 'alert' }, String(e.message || e))));
    const onChange = () => { if (this.isConnected) run(); };
    window.addEventListener('bl-data-changed', onChange, { once: true });
    return [screenHeader(t('nav_customers')), form,
      h('div', { class: 'row actions' }, h('a', { href: '#/register', class: 'btn', testid: 'go-register' },
        '＋ ', t('register_customer'))), results];
  }

  async items(rows) {
    if (!rows.length) return [h('p', { class: 'empty', testid: 'no-results' }, t('no_results'))];
    const list = h('ul', { class: 'cards', testid: 'customer-list' });
    for (const raw of rows) {
      const c = rowValues(raw);
      list.append(h('li', {},
        h('a', { href: `#/customer/${c.id}`, class: 'card link', testid: 'customer-item',
          'data-id': c.id },
        h('span', { class: 'title' }, fmtName(c.name), ' ',
          c.customer_class ? badge(tc('cls_', c.customer_class), 'muted') : null,
          await recordBadges('customers', raw)),
        h('span', { class: 'sub' }, shown(c.mobile, fmtMobile), c.branch ? ` · ${c.branch}` : ''))));
    }
    const more = rows.length >= 50;
    return [h('p', { class: 'count', testid: 'result-count' },
      more ? t('results_more', { n: rows.length }) : t('results', { n: rows.length })), list];
  }
}

function section(title, testid, body) {
  return h('section', { class: 'panel', 'aria-labelledby': `${testid}-h`, testid },
    h('h2', { id: `${testid}-h` }, title), body);
}

class CustomerCard extends Screen {
  async render() {
    const id = this.params.id;
    const c = await api.getCustomer(id);
    if (!c) return [screenHeader(t('archive'), '#/customers'), h('p', { class: 'empty' }, t('no_results'))];
    const [visits, complaints, tickets, points] = await Promise.all([
      api.customerVisits(id), api.customerComplaints(id), api.customerTickets(id),
      api.customerPoints(id)]);
    const head = screenHeader(fmtName(c.name), '#/customers');
    head.querySelector('h1').setAttribute('data-testid', 'customer-name');
    add(head.querySelector('h1'), ' ', ...(await recordBadges('customers', c)));
    const actions = h('nav', { class: 'row actions wrap', 'aria-label': t('archive') },
      h('a', { class: 'btn primary', href: `#/visit/${id}`, testid: 'action-visit' }, t('record_visit')),
      h('a', { class: 'btn', href: `#/complaint/new?customer=${id}`, testid: 'action-complaint' }, t('log_complaint')),
      h('a', { class: 'btn', href: `#/ticket/new?customer=${id}`, testid: 'action-ticket' }, t('new_ticket')),
      h('a', { class: 'btn', href: `#/redeem/${id}`, testid: 'action-redeem' }, t('redeem_points')),
      h('a', { class: 'btn', href: `#/register?referrer=${id}`, testid: 'action-refer' }, t('register_customer')));
    const facts = dl([
      [t('f_mobile'), shown(c.mobile, fmtMobile), 'customer-mobile'],
      [t('f_phone'), shown(c.phone), 'customer-phone'],
      [t('f_email'), shown(c.email), 'customer-email'],
      [t('f_address'), shown(c.address), 'customer-address'],
      [t('f_id_number'), shown(c.id_number), 'customer-id-number'],
      c.org_code != null ? [t('f_org_code'), shown(c.org_code), 'customer-org-code'] : null,
      c.bank_account != null ? [t('f_bank_account'), shown(c.bank_account), 'customer-bank-account'] : null,
      [t('f_birthday'), shown(c.birthday, fmtDate), 'customer-birthday'],
      [t('f_credit_status'), shown(c.credit_status), 'customer-credit-status'],
      [t('f_customer_class'), tc('cls_', c.customer_class)],
      [t('f_lifecycle_stage'), tc('lc_', c.lifecycle_stage)],
      [t('f_source'), tc('source_', c.source)],
      [t('f_branch'), c.branch || '—'],
      [t('f_registered_at'), fmtDateTime(c.registered_at)],
      c.filing_status ? [t('f_filing_status'), tc('fs_', c.filing_status)] : null,
      c.notes ? [t('f_notes'), shown(c.notes)] : null,
      [t('points_balance'), fmtNumber(points == null ? c.points ?? 0 : (typeof points === 'object' ? points.balance : points)), 'customer-points'],
    ]);
    const contacts = (c.contacts || []).length ? h('ul', { class: 'plain' }, c.contacts.map((k) =>
      h('li', { testid: 'contact-item' }, h('strong', {}, fmtName(k.name)),
        k.title ? ` · ${k.title}` : '', k.is_primary ? ' ★' : '', h('br'),
        shown(k.mobile, fmtMobile), k.phone ? [' · ', shown(k.phone)] : '')))
      : h('p', { class: 'empty' }, t('no_contacts'));
    return [head, actions,
      section(t('archive'), 'customer-facts', facts),
      section(t('contacts'), 'customer-contacts', contacts),
      section(t('recent_visits'), 'customer-visits', await visitList(visits)),
      section(t('recent_complaints'), 'customer-complaints', await complaintList(complaints)),
      section(t('recent_tickets'), 'customer-tickets', await ticketList(tickets))];
  }
}

async function visitList(rows) {
  rows = (rows || []).map(rowValues);
  if (!rows.length) return h('p', { class: 'empty' }, t('no_visits'));
  const ul = h('ul', { class: 'plain' });
  for (const v of rows.slice(0, 10)) {
    ul.append(h('li', { testid: 'visit-item', 'data-id': v.id },
      h('strong', {}, fmtDateTime(v.visited_at), ' · ', tc('kind_', v.kind)), ' ',
      await recordBadges('visits', v), h('br'),
      v.content || '', v.result ? ` → ${v.result}` : ''));
  }
  return ul;
}

/** Complaint rows as links to their page. */
export async function complaintList(rows) {
  rows = (rows || []).map(rowValues);
  if (!rows.length) return h('p', { class: 'empty' }, t('no_complaints'));
  const ul = h('ul', { class: 'cards' });
  for (const c of rows) {
    ul.append(h('li', {}, h('a', { class: 'card link', href: `#/complaint/${c.id}`,
      testid: 'complaint-item', 'data-id': c.id },
    h('span', { class: 'title' }, c.number || t('complaint'), ' ', badge(tc('st_', c.status), 'info'),
      c.overdue ? badge(t('overdue'), 'bad') : null, await recordBadges('complaints', c)),
    h('span', { class: 'sub' }, tc('demand_', c.demand), ' · ', t('deadline'), ' ',
      fmtDateTime(c.deadline_at)))));
  }
  return ul;
}

/** Ticket rows as links to their page. */
export async function ticketList(rows) {
  rows = (rows || []).map(rowValues);
  if (!rows.length) return h('p', { class: 'empty' }, t('no_tickets'));
  const ul = h('ul', { class: 'cards' });
  for (const k of rows) {
    ul.append(h('li', {}, h('a', { class: 'card link', href: `#/ticket/${k.id}`,
      testid: 'ticket-item', 'data-id': k.id },
    h('span', { class: 'title' }, k.number || t('ticket'), ' ', badge(tc('st_', k.status), 'info'),
      await recordBadges('tickets', k)),
    h('span', { class: 'sub' }, k.description || '', k.fee_fen != null ? ` · ${fmtMoney(k.fee_fen)}` : ''))));
  }
  return ul;
}

define('bl-customers', CustomerList);
define('bl-customer-card', CustomerCard);
