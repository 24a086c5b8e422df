// Small DOM helpers shared by the screens: element building, form fields with labels,
// badges, toasts. No innerHTML with data: every value goes in as text.
import { t } from '../i18n.js';

/** h('div', {class: 'x', testid: 'y', onclick}, child, …): an element. */
export function h(tag, attrs = {}, ...children) {
  const isSvg = ['svg', 'path', 'line', 'rect', 'circle', 'text', 'g', 'polyline',
    'polygon', 'title', 'desc'].includes(tag);
  const el = isSvg ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'testid') el.setAttribute('data-testid', v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && !isSvg) el.value = v;
    else if (k === 'checked' && !isSvg) el.checked = Boolean(v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** Append children to an element, skipping null/false (DOM append would print "null"). */
export function add(el, ...children) { append(el, children); return el; }

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let seq = 0;
/** A labelled form field: input/select/textarea with a stable id and test id. */
export function field(name, label, { type = 'text', required = false, options = null,
  value = '', testid, hint, rows = 3, ...rest } = {}) {
  const id = `f-${name}-${++seq}`;
  let control;
  if (options) {
    control = h('select', { id, name, required, testid: testid || `field-${name}`, ...rest },
      options.map(([v, l]) => h('option', { value: v, selected: String(v) === String(value) }, l)));
  } else if (type === 'textarea') {
    control = h('textarea', { id, name, required, rows, testid: testid || `field-${name}`, ...rest });
    control.value = value ?? '';
  } else if (type === 'checkbox') {
    control = h('input', { id, name, type, checked: Boolean(value), testid: testid || `field-${name}`, ...rest });
    return h('div', { class: 'field check' }, control, h('label', { for: id }, label));
  } else {
    control = h('input', { id, name, type, required, value: value ?? '',
      testid: testid || `field-${name}`, ...rest });
  }
  const hintEl = hint ? h('small', { id: `${id}-hint`, class: 'hint' }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' },
    h('label', { for: id }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    control, hintEl);
}

/** Form values as an object: empty strings become null, checkboxes booleans. */
export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === 'checkbox') out[el.name] = el.checked;
    else out[el.name] = el.value.trim() === '' ? null : el.value.trim();
  }
  return out;
}

/** A status pill; tone one of ok, warn, bad, info, muted. */
export function badge(text, tone = 'info', testid) {
  return h('span', { class: `badge ${tone}`, testid }, text);
}

/** The "not yet synced" pill. */
export const pendingBadge = (testid = 'pending-badge') => badge(t('not_synced'), 'warn', testid);
/** The conflict marker. */
export const conflictBadge = (testid = 'conflict-badge') => badge(`⚠ ${t('conflict')}`, 'bad', testid);

/** A short message at the bottom of the screen, read out by screen readers. */
export function toast(text, tone = 'ok') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const el = h('div', { class: `toast ${tone}`, role: tone === 'bad' ? 'alert' : 'status',
    testid: 'toast' }, text);
  box.replaceChildren(el); // one at a time: a burst of saves is one message
  setTimeout(() => el.remove(), tone === 'bad' ? 7000 : 3500);
}

/** An inline error line inside a form (role=alert), replacing the previous one. */
export function formError(form, message) {
  let el = form.querySelector('.form-error');
  if (!el) { el = h('p', { class: 'form-error', role: 'alert', testid: 'form-error' }); form.prepend(el); }
  el.textContent = message;
  el.hidden = !message;
}

/** A screen's title bar with an optional back link. */
export function screenHeader(title, back) {
  return h('div', { class: 'screen-head' },
    back ? h('a', { href: back, class: 'btn ghost back', testid: 'back',
      'aria-label': t('back') }, '‹ ', t('back')) : null,
    h('h1', { tabindex: '-1', class: 'screen-title' }, title));
}

/** Wrap an async submit handler: disables the button, shows errors in the form. */
export function onSubmit(form, handler) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = form.querySelector('[type=submit]');
    if (btn) btn.disabled = true;
    formError(form, '');
    try { await handler(formValues(form), form); } catch (e) {
      console.error(e);
      formError(form, t('error', { e: e?.message || String(e) }));
    } finally { if (btn && btn.isConnected) btn.disabled = false; }
  });
}

/** A definition row for the archive card. */
export function dl(rows) {
  return h('dl', { class: 'facts' }, rows.filter(Boolean).map(([k, v, testid]) => [
    h('dt', {}, k), h('dd', { testid }, v ?? '—')]));
}
