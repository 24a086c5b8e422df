// Boot of the Branchline web app: registers the service worker, loads the device core,
// restores the session and routes hash URLs to screens (Web Components in js/ui/).
//
// data-testid reference (stable; the Playwright e2e test relies on them):
//   shell:      app-shell, main, nav-customers, nav-register, nav-complaints, nav-tickets,
//               nav-manager, toast, screen-error, back, form-error, core-error
//   status bar: status-bar, net-status (data-online), pending-count (data-count),
//               last-sync, sync-error, sync-button, lang-switch, lock-button, logout-button
//   dialogs:    confirm-dialog, confirm-ok, confirm-cancel
//   login:      login-form, login-username, login-password, login-server, login-submit
//   PIN:        pin-form, pin-input, pin-confirm, pin-submit, pin-skip
//   lock:       unlock-form, lock-user, unlock-secret, unlock-submit, unlock-logout
//   customers:  search-form, customer-search, search-submit, go-register, customer-results,
//               customer-list, customer-item (data-id), no-results, pending-badge,
//               conflict-badge
//   card:       customer-name, action-visit, action-complaint, action-ticket, action-redeem,
//               action-refer, customer-facts, customer-mobile, customer-phone,
//               customer-email, customer-address, customer-id-number, customer-birthday,
//               customer-credit-status, customer-points, customer-contacts, contact-item,
//               customer-visits, visit-item, customer-complaints, complaint-item,
//               customer-tickets, ticket-item
//   visit:      visit-form, form-customer, visit-kind, visit-content, visit-result,
//               visit-next-step, visit-place, visit-satisfaction, visit-submit, visit-cancel
//   register:   register-form, register-name, register-mobile, register-source,
//               register-intention, register-referrer, register-notes, register-submit,
//               register-cancel
//   complaint:  complaint-form, complaint-complainant, complaint-phone, complaint-demand,
//               complaint-channel, complaint-content, complaint-submit, complaint-cancel,
//               pick-customer-search, pick-customer-results, pick-customer-item,
//               complaint-status, complaint-overdue, complaint-deadline, complaint-steps,
//               complaint-step-<action>, complaint-form-<action>,
//               complaint-action-<action>, complaint-<action>-<field>
//               (actions: accept decline assign investigate review reply close
//               return_visit reopen escalate compensation), complaint-list,
//               go-complaint-new
//   tickets:    ticket-form, ticket-channel, ticket-description, ticket-appointment,
//               ticket-submit, ticket-cancel, ticket-status, ticket-fee, ticket-steps,
//               ticket-action-arrive, ticket-step-complete, ticket-complete-form,
//               ticket-price-code, ticket-work-done, ticket-signature, signature-canvas,
//               signature-clear, ticket-consent, ticket-action-complete, ticket-list,
//               go-ticket-new
//   points:     redeem-form, redeem-balance, redeem-points, redeem-note, redeem-submit,
//               redeem-cancel
//   manager:    manager-tab-{approvals,deadlines,conflicts,sync,reports,analytics},
//               manager-<tab>, online-only, forbidden, approval-list, approval-item,
//               approval-note, approval-approve, approval-decline, no-approvals,
//               compensation-item, compensation-approve, compensation-reject,
//               deadlines-overdue-only, deadline-table, deadline-row, conflict-list,
//               conflict-item, conflict-resolve-winner, conflict-resolve-loser,
//               no-conflicts, sync-health-table, sync-health-row, report-form,
//               report-kind, report-period, report-show, report-view, report-branches,
//               chart-contribution, chart-pyramid, chart-rfm, table-contribution,
//               table-pyramid, table-rfm
import * as api from './ui/api.js';
import { h, toast } from './ui/dom.js';
import { t } from './i18n.js';
import './ui/status-bar.js';
import './ui/session-screens.js';
import './ui/customers.js';
import './ui/forms.js';
import './ui/work.js';
import './ui/manager.js';

const ROUTES = [
  [/^\/customers$/, 'bl-customers'],
  [/^\/customer\/([\w-]+)$/, 'bl-customer-card', ['id']],
  [/^\/visit\/([\w-]+)$/, 'bl-visit-form', ['id']],
  [/^\/register$/, 'bl-register-form'],
  [/^\/complaint\/new$/, 'bl-complaint-form'],
  [/^\/complaint\/([\w-]+)$/, 'bl-complaint', ['id']],
  [/^\/complaints$/, 'bl-complaints'],
  [/^\/ticket\/new$/, 'bl-ticket-form'],
  [/^\/ticket\/([\w-]+)$/, 'bl-ticket', ['id']],
  [/^\/tickets$/, 'bl-tickets'],
  [/^\/redeem\/([\w-]+)$/, 'bl-redeem-form', ['id']],
  [/^\/manager(?:\/(\w+))?$/, 'bl-manager', ['tab']],
];
/** Screens that only show data (re-rendered when a sync brings new rows); forms are
 * never re-rendered under the user's fingers. */
const READ_SCREENS = new Set(['bl-customers', 'bl-customer-card', 'bl-complaint', 'bl-complaints',
  'bl-ticket', 'bl-tickets']);
/** Roles whose work is the field (no manager tab). */
const FIELD_ROLES = new Set(['sales_rep', 'technician']);

let mode = 'boot';
let user = null;
let lastActivity = Date.now();
const idleMs = () => Number(localStorage.getItem('bl.idleMinutes') || 5) * 60_000;

const $ = (sel) => document.querySelector(sel);

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/customers';
  const [path, qs = ''] = raw.split('?');
  return { path, query: new URLSearchParams(qs) };
}

function mount(tag, params = {}) {
  const view = $('#view');
  const el = document.createElement(tag);
  el.params = params;
  el.addEventListener('bl-rendered', () => {
    const target = el.querySelector('[data-autofocus]') || el.querySelector('h1');
    if (target && document.activeElement === document.body) target.focus({ preventScroll: true });
  }, { once: true });
  view.replaceChildren(el);
  window.scrollTo(0, 0);
}

/** Navigation icons: simple strokes, drawn inline (no icon font, no emoji font). */
const ICONS = {
  customers: 'M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM2 21v-1a6 6 0 0 1 12 0v1M16 3.5a4 4 0 0 1 0 7.5M18 14a6 6 0 0 1 4 6v1',
  register: 'M12 5v14M5 12h14',
  complaints: 'M5 21V4h11l-1.5 4L16 12H5',
  tickets: 'M14.7 6.3a4 4 0 0 0-5.4 5.2L3 17.8V21h3.2l6.3-6.3a4 4 0 0 0 5.2-5.4l-2.6 2.6-2.4-.6-.6-2.4z',
  manager: 'M4 20V10M10 20V4M16 20v-7M22 20H2',
};
function icon(k) {
  return h('svg', { class: 'icon', viewBox: '0 0 24 24', width: 24, height: 24, 'aria-hidden': 'true',
    fill: 'none', stroke: 'currentColor', 'stroke-width': 2, 'stroke-linecap': 'round', 'stroke-linejoin': 'round' },
  h('path', { d: ICONS[k] }));
}

function renderNav() {
  const nav = $('#nav');
  const { path } = parseHash();
  const items = [['customers', '#/customers'], ['register', '#/register'],
    ['complaints', '#/complaints'], ['tickets', '#/tickets']];
  if (user && !FIELD_ROLES.has(user.role)) items.push(['manager', '#/manager']);
  nav.replaceChildren(...items.map(([k, href]) => {
    const active = path.startsWith(href.slice(1)) || (k === 'customers' && path.startsWith('/customer'));
    return h('a', { href, class: `nav-item ${active ? 'active' : ''}`, testid: `nav-${k}`,
      'aria-current': active ? 'page' : null },
    icon(k), h('span', {}, t(`nav_${k}`)));
  }));
}

function route() {
  if (mode !== 'app') return;
  const { path, query } = parseHash();
  for (const [re, tag, names = []] of ROUTES) {
    const m = re.exec(path);
    if (m) {
      const params = { query };
      names.forEach((n, i) => { params[n] = m[i + 1]; });
      renderNav();
      mount(tag, params);
      return;
    }
  }
  location.hash = '#/customers';
}

function setMode(next, params = {}) {
  mode = next;
  document.body.dataset.mode = next;
  $('#chrome').hidden = next !== 'app';
  if (next === 'login') mount('bl-login', params);
  else if (next === 'pin') mount('bl-pin-setup', params);
  else if (next === 'locked') mount('bl-lock', params);
  else if (next === 'app') {
    $('#status').replaceChildren(h('bl-status-bar', { testid: 'status-bar' }));
    route();
  }
}

async function restore(message, afterLogin = false) {
  const s = await api.state();
  const u = s?.user && typeof s.user === 'object' ? s.user : (s?.user ? { username: s.user } : null);
  user = u || s?.role ? { ...(u || {}), role: s?.role ?? u?.role } : null;
  // Not enrolled: sign in online. Enrolled but locked (every reload: keys live only in
  // memory): the lock screen, which also works offline.
  const enrolled = s ? (s.enrolled ?? Boolean(s.user)) : false;
  if (!enrolled) setMode('login', { message });
  else if (s.locked) setMode('locked');
  else setMode(afterLogin ? 'pin' : 'app');
}

/** A modal yes/no question (in-app, so tests and kiosks need no native dialog). */
function confirmDialog(text) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'panel', testid: 'confirm-dialog', 'aria-labelledby': 'confirm-text' },
      h('p', { id: 'confirm-text' }, text),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'btn danger', testid: 'confirm-ok',
          onclick: () => { dlg.close(); resolve(true); } }, t('yes')),
        h('button', { type: 'button', class: 'btn', testid: 'confirm-cancel',
          onclick: () => { dlg.close(); resolve(false); } }, t('no'))));
    dlg.addEventListener('close', () => { dlg.remove(); resolve(false); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

async function lockNow(reason) {
  if (mode !== 'app') return;
  try { await api.lock(); } catch (e) { console.warn(e); }
  setMode('locked', { reason });
}

async function logoutNow(pending) {
  const s = await api.status();
  const n = pending ?? s.pending ?? 0;
  if (!(await confirmDialog(t('logout_confirm', { n })))) return;
  try { await api.logout(); } catch (e) { console.warn(e); }
  localStorage.removeItem('bl.lastSync');
  user = null;
  setMode('login');
}

function watchIdle() {
  const minutes = Number(localStorage.getItem('bl.idleMinutes') || 5);
  if (api.setIdleMinutes(minutes)) return; // the core locks and emits `locked`
  const touch = () => { lastActivity = Date.now(); };
  for (const ev of ['pointerdown', 'keydown', 'wheel', 'touchstart']) {
    window.addEventListener(ev, touch, { passive: true, capture: true });
  }
  setInterval(() => {
    if (mode === 'app' && Date.now() - lastActivity > idleMs()) lockNow(t('idle_locked'));
  }, 10_000);
}

function currentTag() { return $('#view')?.firstElementChild?.localName; }

function onDataChanged() {
  $('bl-status-bar')?.refresh();
  const el = $('#view')?.firstElementChild;
  if (mode === 'app' && el && READ_SCREENS.has(currentTag()) && !el.contains(document.activeElement)) el.load();
}

async function boot() {
  document.documentElement.lang = localStorage.getItem('bl.lang') || 'zh-CN';
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch((e) => console.warn('SW', e));
  }
  await api.loadCore();
  if (api.coreError()) {
    $('#view').replaceChildren(h('p', { class: 'panel error', role: 'alert', testid: 'core-error' },
      t('error', { e: api.coreError().message })));
  }
  api.on('change', onDataChanged);
  api.on('sync', onDataChanged);
  api.on('locked', () => { if (mode === 'app' || mode === 'pin') setMode('locked'); });
  api.on('wiped', (info) => {
    user = null;
    localStorage.removeItem('bl.lastSync');
    toast(String(info?.reason || '').includes('revoked') ? t('revoked') : t('wiped'), 'bad');
    setMode('login');
  });
  window.addEventListener('bl-data-changed', onDataChanged);
  // The side rail starts below the header, whose height depends on wrapping.
  new ResizeObserver(([e]) => document.documentElement.style.setProperty('--top-h',
    `${Math.ceil(e.target.getBoundingClientRect().height)}px`)).observe($('#chrome'));
  window.addEventListener('hashchange', route);
  window.addEventListener('bl-lang', () => {
    renderNav();
    if (mode === 'app') $('#status').replaceChildren(h('bl-status-bar', { testid: 'status-bar' }));
    const el = $('#view')?.firstElementChild;
    el?.load?.();
  });
  document.addEventListener('bl-session', async (e) => {
    await restore(undefined, e.detail.what === 'login');
  });
  document.addEventListener('bl-lock', () => lockNow());
  document.addEventListener('bl-logout', (e) => logoutNow(e.detail?.pending));
  for (const ev of ['online', 'offline']) window.addEventListener(ev, () => $('bl-status-bar')?.refresh());
  watchIdle();
  if (!api.coreError()) await restore();
}

boot();
