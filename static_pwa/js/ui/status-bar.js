// <bl-status-bar>: online/offline, outbox count, last sync, the sync button, the
// language switch, lock and sign-out. Refreshes on core events and every 15 s.
import * as api from './api.js';
import { h, toast } from './dom.js';
import { define } from './screen.js';
import { t, lang, setLang, fmtDateTime } from '../i18n.js';

class StatusBar extends HTMLElement {
  connectedCallback() {
    this.setAttribute('role', 'region');
    this.setAttribute('aria-label', t('sync_status'));
    this.syncing = false;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), 15000);
    this.onNet = () => this.refresh();
    window.addEventListener('online', this.onNet);
    window.addEventListener('offline', this.onNet);
  }

  disconnectedCallback() {
    clearInterval(this.timer);
    window.removeEventListener('online', this.onNet);
    window.removeEventListener('offline', this.onNet);
  }

  async refresh() {
    const s = await api.status();
    const online = navigator.onLine && s.online !== false;
    const pending = Number(s.pending || 0);
    // The core keeps the last sync time in memory; remember it across reloads here.
    if (s.lastSync) localStorage.setItem('bl.lastSync', String(new Date(s.lastSync).getTime()));
    const lastAt = s.lastSync || (localStorage.getItem('bl.lastSync') ? Number(localStorage.getItem('bl.lastSync')) : null);
    const last = lastAt ? t('last_sync', { t: fmtDateTime(lastAt, { short: true }) })
      : t('never_synced');
    this.replaceChildren(...[
      h('span', { class: `net ${online ? 'on' : 'off'}`, testid: 'net-status', role: 'status',
        'data-online': String(online) }, h('span', { class: 'dot', 'aria-hidden': 'true' }),
      online ? t('online') : t('offline')),
      h('span', { class: `outbox ${pending ? 'has' : ''}`, testid: 'pending-count',
        'data-count': String(pending), role: 'status' }, t('pending', { n: pending })),
      h('span', { class: 'last-sync', testid: 'last-sync' }, last),
      s.lastError ? h('span', { class: 'sync-error', testid: 'sync-error', title: String(s.lastError) },
        '⚠') : null,
      h('button', { type: 'button', class: 'btn small', testid: 'sync-button',
        disabled: this.syncing || !online, 'aria-label': t('sync_now'),
        onclick: () => this.sync() }, this.syncing ? t('syncing') : t('sync_now')),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'btn small ghost', testid: 'lang-switch', lang: lang() === 'en' ? 'zh-CN' : 'en',
        'aria-label': t('lang_switch_label'), onclick: () => setLang(lang() === 'en' ? 'zh-CN' : 'en') },
      t('lang_switch')),
      h('button', { type: 'button', class: 'btn small ghost', testid: 'lock-button',
        onclick: () => this.dispatchEvent(new CustomEvent('bl-lock', { bubbles: true })) }, t('lock')),
      h('button', { type: 'button', class: 'btn small ghost', testid: 'logout-button',
        onclick: () => this.dispatchEvent(new CustomEvent('bl-logout', { bubbles: true, detail: { pending } })) },
      t('logout')),
    ].filter(Boolean));
  }

  async sync() {
    this.syncing = true;
    await this.refresh();
    try { await api.syncNow(); } catch (e) {
      toast(t('sync_error', { e: e?.message || String(e) }), 'bad');
    } finally {
      this.syncing = false;
      await this.refresh();
      window.dispatchEvent(new CustomEvent('bl-data-changed'));
    }
  }
}

define('bl-status-bar', StatusBar);
