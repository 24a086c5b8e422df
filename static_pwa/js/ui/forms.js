// The rep's write forms: record a visit, register a customer, log a complaint, open a
// service ticket, redeem points. Every one works offline: the core writes to the
// outbox and the local rows at once.
import * as api from './api.js';
import { h, field, onSubmit, screenHeader, toast, formError } from './dom.js';
import { Screen, define } from './screen.js';
import { shown } from './customers.js';
import { t, fmtName, fmtMobile, fmtNumber } from '../i18n.js';

function go(hash) { location.hash = hash; }
function savedToast() { toast(t('saved'), 'ok'); }
function idOf(r) { return typeof r === 'string' ? r : (r?.id ?? r?.values?.id); }
const opts = (prefix, codes) => codes.map((c) => [c, t(prefix + c)]);

/** The customer a form is about, shown as a summary line; null if none chosen. */
async function customerLine(id) {
  if (!id) return null;
  const c = await api.getCustomer(id);
  if (!c) return null;
  return { c, el: h('p', { class: 'about', testid: 'form-customer' }, t('customer'), '：',
    h('strong', {}, fmtName(c.name)), ' ', shown(c.mobile, fmtMobile)) };
}

/** A customer picker for forms opened without one: search, then choose. */
function picker(target) {
  const input = h('input', { type: 'search', id: 'pick-q', testid: 'pick-customer-search',
    placeholder: t('search_placeholder') });
  const list = h('ul', { class: 'cards', testid: 'pick-customer-results' });
  let timer;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const rows = await api.searchCustomers(input.value.trim(), { limit: 20 });
      list.replaceChildren(...(rows || []).map((r) => {
        const c = r.values ? { ...r.values, ...r } : r;
        return h('li', {}, h('a', { class: 'card link', testid: 'pick-customer-item',
          href: `${target}${target.includes('?') ? '&' : '?'}customer=${c.id}` },
        h('span', { class: 'title' }, fmtName(c.name)), h('span', { class: 'sub' }, shown(c.mobile, fmtMobile))));
      }));
    }, 180);
  });
  return h('div', { class: 'panel' }, h('label', { for: 'pick-q' }, t('search')), input, list);
}

class VisitForm extends Screen {
  async render() {
    const cid = this.params.id;
    const who = await customerLine(cid);
    const sat = field('satisfaction', t('satisfaction'), { type: 'number', min: 1, max: 5,
      inputmode: 'numeric', testid: 'visit-satisfaction' });
    sat.hidden = true;
    const kind = field('kind', t('visit_kind'), { options: opts('kind_', ['visit', 'return_visit', 'survey', 'care']),
      testid: 'visit-kind' });
    kind.querySelector('select').addEventListener('change', (e) => {
      const needs = ['return_visit', 'survey'].includes(e.target.value);
      sat.hidden = !needs;
      sat.querySelector('input').required = needs;
    });
    const form = h('form', { class: 'panel', testid: 'visit-form' }, who?.el, kind,
      field('content', t('visit_content'), { type: 'textarea', required: true, testid: 'visit-content' }),
      field('result', t('visit_result'), { type: 'textarea', rows: 2, testid: 'visit-result' }),
      field('next_step', t('next_step'), { testid: 'visit-next-step' }),
      field('place', t('place'), { testid: 'visit-place' }), sat,
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'btn primary', testid: 'visit-submit' }, t('save')),
        h('a', { href: `#/customer/${cid}`, class: 'btn ghost', testid: 'visit-cancel' }, t('cancel'))));
    onSubmit(form, async (v) => {
      const values = { kind: v.kind, content: v.content, result: v.result, next_step: v.next_step,
        place: v.place };
      if (v.satisfaction && !sat.hidden) values.satisfaction = Number(v.satisfaction);
      await api.recordVisit(cid, values);
      savedToast();
      go(`#/customer/${cid}`);
    });
    return [screenHeader(t('record_visit'), `#/customer/${cid}`), form];
  }
}

class RegisterForm extends Screen {
  async render() {
    const ref = this.params.query?.get('referrer');
    const refLine = await customerLine(ref);
    const form = h('form', { class: 'panel', testid: 'register-form' },
      field('name', t('f_name'), { required: true, autocomplete: 'off', testid: 'register-name', maxlength: 100 }),
      field('mobile', t('f_mobile'), { type: 'tel', inputmode: 'tel', autocomplete: 'off',
        testid: 'register-mobile', hint: t('eg', { x: '138 0000 1111' }) }),
      field('source', t('f_source'), { options: opts('source_', ['walk_in', 'call', 'own_development', 'referral', 'agency']),
        value: ref ? 'referral' : 'walk_in', testid: 'register-source' }),
      field('intention', t('f_intention'), { type: 'checkbox', testid: 'register-intention' }),
      refLine ? h('div', { class: 'field' }, h('span', { class: 'label' }, t('f_referrer')),
        h('p', { testid: 'register-referrer' }, fmtName(refLine.c.name))) : null,
      field('notes', t('f_notes'), { type: 'textarea', rows: 2, testid: 'register-notes' }),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'btn primary', testid: 'register-submit' }, t('save')),
        h('a', { href: ref ? `#/customer/${ref}` : '#/customers', class: 'btn ghost', testid: 'register-cancel' }, t('cancel'))));
    onSubmit(form, async (v) => {
      const mobile = v.mobile ? v.mobile.replace(/[\s-]/g, '') : null;
      if (mobile && !/^(\+?86)?1[3-9]\d{9}$/.test(mobile)) {
        formError(form, `${t('f_mobile')}: 138 0000 1111`);
        form.elements.mobile.focus();
        return;
      }
      const values = { name: v.name, mobile,
        source: v.source, intention: v.intention, notes: v.notes,
        referrer_customer_id: ref || null };
      const row = await api.registerCustomer(values);
      savedToast();
      const id = idOf(row);
      go(id ? `#/customer/${id}` : '#/customers');
    });
    return [screenHeader(t('register_customer'), ref ? `#/customer/${ref}` : '#/customers'), form];
  }
}

class ComplaintForm extends Screen {
  async render() {
    const cid = this.params.query?.get('customer');
    const head = screenHeader(t('log_complaint'), cid ? `#/customer/${cid}` : '#/complaints');
    if (!cid) return [head, picker('#/complaint/new')];
    const who = await customerLine(cid);
    const mobile = who && !String(who.c.mobile || '').includes('*') && !String(who.c.mobile || '').startsWith('§')
      ? who.c.mobile : '';
    const form = h('form', { class: 'panel', testid: 'complaint-form' }, who?.el,
      field('complainant', t('complainant'), { required: true, value: who?.c.name || '', testid: 'complaint-complainant' }),
      field('phone', t('complaint_phone'), { type: 'tel', value: mobile || '', testid: 'complaint-phone' }),
      field('demand', t('demand'), { options: opts('demand_', ['refund', 'return', 'exchange', 'compensation', 'criticism']),
        testid: 'complaint-demand' }),
      field('channel', t('channel'), { options: opts('ch_', ['in_person', 'phone', 'letter', 'email', 'online', 'wechat']),
        testid: 'complaint-channel' }),
      field('content', t('complaint_content'), { type: 'textarea', required: true, rows: 4, testid: 'complaint-content' }),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'btn primary', testid: 'complaint-submit' }, t('save')),
        h('a', { href: `#/customer/${cid}`, class: 'btn ghost', testid: 'complaint-cancel' }, t('cancel'))));
    onSubmit(form, async (v) => {
      const row = await api.logComplaint({ customer_id: cid, complainant: v.complainant,
        phone: v.phone, demand: v.demand, content: v.content, channel: v.channel });
      savedToast();
      const id = idOf(row);
      go(id ? `#/complaint/${id}` : `#/customer/${cid}`);
    });
    return [head, form];
  }
}

/** datetime-local text (Beijing time) → RFC 3339 with +08:00. */
export function localToIso(text) {
  if (!text) return null;
  return `${text.length === 16 ? `${text}:00` : text}+08:00`;
}

class TicketForm extends Screen {
  async render() {
    const cid = this.params.query?.get('customer');
    const head = screenHeader(t('new_ticket'), cid ? `#/customer/${cid}` : '#/tickets');
    if (!cid) return [head, picker('#/ticket/new')];
    const who = await customerLine(cid);
    const form = h('form', { class: 'panel', testid: 'ticket-form' }, who?.el,
      field('channel', t('channel'), { options: opts('ch_', ['front_desk', 'phone']), testid: 'ticket-channel' }),
      field('description', t('description'), { type: 'textarea', required: true, testid: 'ticket-description' }),
      field('appointment_at', t('appointment_at'), { type: 'datetime-local', testid: 'ticket-appointment' }),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'btn primary', testid: 'ticket-submit' }, t('save')),
        h('a', { href: `#/customer/${cid}`, class: 'btn ghost', testid: 'ticket-cancel' }, t('cancel'))));
    onSubmit(form, async (v) => {
      const row = await api.createTicket({ customer_id: cid, channel: v.channel,
        description: v.description, appointment_at: localToIso(v.appointment_at) });
      savedToast();
      const id = idOf(row);
      go(id ? `#/ticket/${id}` : `#/customer/${cid}`);
    });
    return [head, form];
  }
}

class RedeemForm extends Screen {
  async render() {
    const cid = this.params.id;
    const who = await customerLine(cid);
    const bal = await api.customerPoints(cid);
    const balance = bal == null ? null : Number(typeof bal === 'object' ? bal.balance : bal);
    const form = h('form', { class: 'panel', testid: 'redeem-form' }, who?.el,
      h('p', { class: 'big', testid: 'redeem-balance' }, t('points_balance'), '：',
        balance == null ? '—' : fmtNumber(balance)),
      field('points', t('points_to_redeem'), { type: 'number', min: 1, max: balance ?? undefined,
        required: true, inputmode: 'numeric', testid: 'redeem-points' }),
      field('note', t('redeem_note'), { testid: 'redeem-note' }),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'btn primary', testid: 'redeem-submit' }, t('redeem')),
        h('a', { href: `#/customer/${cid}`, class: 'btn ghost', testid: 'redeem-cancel' }, t('cancel'))));
    onSubmit(form, async (v) => {
      const pts = Number(v.points);
      if (balance != null && pts > balance) { formError(form, t('not_enough_points')); return; }
      await api.redeemPoints(cid, pts, v.note);
      savedToast();
      go(`#/customer/${cid}`);
    });
    return [screenHeader(t('redeem_points'), `#/customer/${cid}`), form];
  }
}

define('bl-visit-form', VisitForm);
define('bl-register-form', RegisterForm);
define('bl-complaint-form', ComplaintForm);
define('bl-ticket-form', TicketForm);
define('bl-redeem-form', RedeemForm);
