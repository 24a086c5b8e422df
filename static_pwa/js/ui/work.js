// Complaints (投诉) and service tickets (报修): lists, a record's page, and the steps
// of their flows (server/services/complaints.py, tickets.py), taken offline through the
// core's complaintAction / ticketAction.
import * as api from './api.js';
import { h, add, field, onSubmit, screenHeader, toast, badge, dl } from './dom.js';
import { Screen, define } from './screen.js';
import { recordBadges, complaintList, ticketList, shown } from './customers.js';
import { t, tc, fmtDateTime, fmtMoney, fmtName, fmtMobile, yuanToFen } from '../i18n.js';
import './signature-pad.js';

const FINISHED = ['declined', 'closed', 'return_visited'];
const opts = (prefix, codes) => codes.map((c) => [c, t(prefix + c)]);

/** The flow steps offered from a complaint's state: [action, fields] (fields null: a
 * plain button). Mirrors STEPS in server/services/complaints.py. */
function complaintSteps(c) {
  const s = c.status;
  const steps = [];
  if (s === 'received') steps.push(['accept', null], ['decline', [['reason', 'reason', 'textarea']]]);
  if (s === 'accepted' || s === 'assigned') {
    steps.push(['assign', [['department', 'department'], ['handler_id', 'handler']]]);
  }
  if (s === 'assigned') {
    steps.push(['investigate', [['cause', 'cause', 'textarea'], ['course', 'course', 'textarea'],
      ['responsible', 'responsible'], ['conclusion', 'conclusion', 'textarea'],
      ['countermeasures', 'countermeasures', 'textarea'], ['prevention', 'prevention', 'textarea']]]);
  }
  if (s === 'investigated') steps.push(['review', [['note', 'review_note', 'textarea']]]);
  if (s === 'reviewed') {
    steps.push(['reply', [['reply', 'reply_text', 'textarea'], ['channel', 'reply_channel', opts('ch_', ['written', 'oral'])]]]);
  }
  if (s === 'replied') steps.push(['close', null]);
  if (s === 'closed') {
    steps.push(['return_visit', [['satisfaction', 'satisfaction', 'number'], ['note', 'note', 'textarea', false]]]);
  }
  if (FINISHED.includes(s)) steps.push(['reopen', null]);
  if (!FINISHED.includes(s) && !c.major) steps.push(['escalate', [['reason', 'reason', 'textarea']]]);
  if (!FINISHED.includes(s) && s !== 'received' && !['pending', 'approved'].includes(c.compensation_status)) {
    steps.push(['compensation', [['amount', 'amount_yuan', 'text']]]);
  }
  return steps;
}

function stepForm(action, fields, run, choices = {}) {
  if (!fields) {
    return h('button', { type: 'button', class: 'btn primary', testid: `complaint-action-${action}`,
      onclick: async (e) => { e.target.disabled = true; try { await run({}); } catch (err) {
        toast(t('error', { e: err.message || err }), 'bad'); } finally { e.target.disabled = false; } } },
    t(`act_${action}`));
  }
  const form = h('form', { class: 'stack', testid: `complaint-form-${action}` },
    fields.map(([name, label, kind = 'text', required = true]) => {
      const k = choices[name] || kind; // a list of [value, label]: a select
      return field(name, t(label), {
        type: Array.isArray(k) ? 'text' : k, options: Array.isArray(k) ? k : null,
        required, testid: `complaint-${action}-${name}`,
        ...(k === 'number' ? { min: 1, max: 5, inputmode: 'numeric' } : {}) });
    }),
    h('button', { type: 'submit', class: 'btn primary', testid: `complaint-action-${action}` }, t(`act_${action}`)));
  onSubmit(form, async (v) => {
    if (action === 'compensation') {
      const fen = yuanToFen(v.amount);
      if (!fen) throw new Error(t('amount_yuan'));
      await run({ amount_fen: fen });
    } else if (action === 'reply') {
      await run({ text: v.reply, reply: v.reply, channel: v.channel });
    } else if (action === 'return_visit') {
      await run({ satisfaction: Number(v.satisfaction), note: v.note });
    } else {
      await run(v);
    }
  });
  return h('details', { class: 'step', testid: `complaint-step-${action}` },
    h('summary', { class: 'btn' }, t(`act_${action}`)), form);
}

class ComplaintPage extends Screen {
  async render() {
    const c = await api.getComplaint(this.params.id);
    if (!c) return [screenHeader(t('complaint'), '#/complaints'), h('p', { class: 'empty' }, t('no_complaints'))];
    const v = c.values ? { ...c.values, ...c } : c;
    const back = v.customer_id ? `#/customer/${v.customer_id}` : '#/complaints';
    const overdue = v.overdue ?? (!FINISHED.includes(v.status) && v.deadline_at && new Date(v.deadline_at) < new Date());
    const head = screenHeader(t('complaint_no', { n: v.number || '' }), back);
    add(head.querySelector('h1'), ' ', badge(tc('st_', v.status), 'info', 'complaint-status'),
      overdue ? badge(t('overdue'), 'bad', 'complaint-overdue') : null,
      v.hq_overdue ? badge(t('hq_overdue'), 'bad') : null, ...(await recordBadges('complaints', v)));
    const run = async (action, data) => {
      if (action === 'compensation') {
        // Requesting compensation goes to the node (the device core has no offline
        // form of it); the change comes back with the next sync.
        if (!navigator.onLine) throw new Error(t('online_only'));
        await api.rest(`/api/v1/complaints/${v.id}/compensation`, { method: 'POST', body: data });
        toast(t('saved_online'), 'ok');
        api.syncNow();
        return;
      }
      await api.complaintAction(v.id, action, data);
      toast(t('saved'), 'ok');
      this.load();
    };
    const facts = dl([
      [t('complainant'), fmtName(v.complainant)],
      [t('complaint_phone'), shown(v.phone, fmtMobile)],
      [t('demand'), tc('demand_', v.demand)],
      [t('channel'), tc('ch_', v.channel)],
      [t('received_at'), fmtDateTime(v.received_at)],
      [t('deadline'), fmtDateTime(v.deadline_at), 'complaint-deadline'],
      [t('complaint_content'), v.content],
      v.reply ? [t('reply_text'), v.reply] : null,
      v.compensation_fen ? [t('act_compensation'), [fmtMoney(v.compensation_fen), ' ',
        tc('st_', v.compensation_status)]] : null,
    ]);
    // Pickers for assigning: the branch's users and the departments this device holds.
    const [users, depts] = await Promise.all([api.localUsers(), api.localDepartments()]);
    const choices = {};
    if (users.length) choices.handler_id = users.map((u) => [u.id, `${fmtName(u.name)}${u.department ? ` · ${u.department}` : ''}`]);
    if (depts.length) choices.department = depts.map((d) => [d, d]);
    const steps = complaintSteps(v).map(([a, f]) => stepForm(a, f, (d) => run(a, d), choices));
    return [head, h('section', { class: 'panel' }, facts),
      steps.length ? h('section', { class: 'panel', 'aria-label': t('status'), testid: 'complaint-steps' },
        h('div', { class: 'steps' }, steps)) : null];
  }
}

class ComplaintsScreen extends Screen {
  async render() {
    const rows = await api.listComplaints({});
    return [screenHeader(t('complaints_title')),
      h('div', { class: 'row actions' }, h('a', { href: '#/complaint/new', class: 'btn', testid: 'go-complaint-new' },
        '＋ ', t('log_complaint'))),
      h('section', { class: 'panel', testid: 'complaint-list' }, await complaintList(rows))];
  }
}

class TicketPage extends Screen {
  async render() {
    const k0 = await api.getTicket(this.params.id);
    if (!k0) return [screenHeader(t('ticket'), '#/tickets'), h('p', { class: 'empty' }, t('no_tickets'))];
    const k = k0.values ? { ...k0.values, ...k0 } : k0;
    const back = k.customer_id ? `#/customer/${k.customer_id}` : '#/tickets';
    const head = screenHeader(t('ticket_no', { n: k.number || '' }), back);
    add(head.querySelector('h1'), ' ', badge(tc('st_', k.status), 'info', 'ticket-status'),
      ...(await recordBadges('tickets', k)));
    const run = async (action, data) => {
      await api.ticketAction(k.id, action, data);
      toast(t('saved'), 'ok');
      this.load();
    };
    const facts = dl([
      [t('channel'), tc('ch_', k.channel)], [t('description'), k.description],
      [t('appointment_at'), fmtDateTime(k.appointment_at)],
      k.arrived_at ? [t('act_arrive'), fmtDateTime(k.arrived_at)] : null,
      k.completed_at ? [t('act_complete'), fmtDateTime(k.completed_at)] : null,
      k.fee_fen != null ? [t('fee'), fmtMoney(k.fee_fen), 'ticket-fee'] : null,
      k.work_done ? [t('work_done'), k.work_done] : null,
    ]);
    const steps = [];
    const act = (action, label) => h('button', { type: 'button', class: 'btn primary',
      testid: `ticket-action-${action}`,
      onclick: () => run(action, {}).catch((e) => toast(t('error', { e: e.message }), 'bad')) }, label);
    // The technician's steps (server tickets.py): confirm, arrive, then complete on site.
    if (k.status === 'dispatched') steps.push(act('confirm', t('act_confirm')));
    if (k.status === 'confirmed' && !k.arrived_at) steps.push(act('arrive', t('act_arrive')));
    if (k.status === 'confirmed' && k.arrived_at) steps.push(await this.completeForm(k, run));
    return [head, h('section', { class: 'panel' }, facts),
      steps.length ? h('section', { class: 'panel', testid: 'ticket-steps' }, h('div', { class: 'steps' }, steps)) : null];
  }

  async completeForm(k, run) {
    const items = (await api.priceItems()) || [];
    const list = items.map((r) => (r.values ? { ...r.values, ...r } : r)).filter((r) => r.active !== false);
    const code = list.length
      ? field('price_code', t('price_code'), { options: list.map((r) => [r.code, `${r.code} · ${r.name || ''} · ${fmtMoney(r.fee_fen)}`]),
        testid: 'ticket-price-code' })
      : field('price_code', t('price_code'), { required: true, testid: 'ticket-price-code', autocapitalize: 'characters' });
    const pad = h('bl-signature-pad', { testid: 'ticket-signature' });
    const form = h('form', { class: 'stack', testid: 'ticket-complete-form' }, code,
      field('work_done', t('work_done'), { type: 'textarea', required: true, testid: 'ticket-work-done' }),
      h('div', { class: 'field' }, h('span', { class: 'label' }, t('signature')), pad),
      field('consent', t('consent'), { type: 'checkbox', testid: 'ticket-consent' }),
      h('button', { type: 'submit', class: 'btn primary', testid: 'ticket-action-complete' }, t('act_complete')));
    onSubmit(form, async (v) => {
      if (!v.consent) throw new Error(t('consent'));
      if (!pad.value) throw new Error(t('sign_here'));
      const code = String(v.price_code || '').trim().toUpperCase();
      const item = list.find((r) => String(r.code).toUpperCase() === code);
      if (list.length && !item) throw new Error(t('price_code'));
      await run('complete', { price_code: code, fee_fen: item ? item.fee_fen : null, consent: true,
        signature: pad.value, work_done: v.work_done });
    });
    return h('details', { class: 'step', testid: 'ticket-step-complete' },
      h('summary', { class: 'btn' }, t('act_complete')), form);
  }
}

class TicketsScreen extends Screen {
  async render() {
    const rows = await api.listTickets({});
    return [screenHeader(t('tickets_title')),
      h('div', { class: 'row actions' }, h('a', { href: '#/ticket/new', class: 'btn', testid: 'go-ticket-new' },
        '＋ ', t('new_ticket'))),
      h('section', { class: 'panel', testid: 'ticket-list' }, await ticketList(rows))];
  }
}

define('bl-complaint', ComplaintPage);
define('bl-complaints', ComplaintsScreen);
define('bl-ticket', TicketPage);
define('bl-tickets', TicketsScreen);
