// Sign-in, the optional PIN, and the lock screen. They emit `bl-session` events that
// app.js turns into the next screen.
import * as api from './api.js';
import { h, field, onSubmit, formError } from './dom.js';
import { Screen, define } from './screen.js';
import { lockIcon } from './customers.js';
import { t, lang, setLang } from '../i18n.js';

function done(el, what) {
  el.dispatchEvent(new CustomEvent('bl-session', { bubbles: true, detail: { what } }));
}

function langButton() {
  return h('button', { type: 'button', class: 'btn ghost small', testid: 'lang-switch',
    'aria-label': t('lang_switch_label'), onclick: () => setLang(lang() === 'en' ? 'zh-CN' : 'en') },
  t('lang_switch'));
}

class LoginScreen extends Screen {
  async render() {
    const form = h('form', { class: 'panel narrow', testid: 'login-form', 'aria-labelledby': 'login-h' },
      h('h1', { id: 'login-h', class: 'screen-title', tabindex: '-1' }, t('login_title')),
      field('username', t('username'), { required: true, autocomplete: 'username',
        testid: 'login-username', 'data-autofocus': true, autocapitalize: 'none', spellcheck: 'false' }),
      field('password', t('password'), { type: 'password', required: true,
        autocomplete: 'current-password', testid: 'login-password' }),
      field('server', t('server'), { value: location.origin, readonly: true, testid: 'login-server',
        hint: navigator.onLine ? null : t('login_offline') }),
      h('button', { type: 'submit', class: 'btn primary block', testid: 'login-submit' }, t('login')));
    onSubmit(form, async (v) => {
      if (!navigator.onLine) { formError(form, t('login_offline')); return; }
      const btn = form.querySelector('[type=submit]');
      btn.textContent = t('logging_in');
      try { await api.login(v.username, form.elements.password.value); } finally {
        btn.textContent = t('login');
      }
      done(this, 'login');
    });
    return h('div', { class: 'center' },
      h('div', { class: 'brand' }, h('img', { src: '/icons/icon.svg', alt: '', width: 64, height: 64 }),
        h('p', { class: 'brand-name' }, t('app_name'))),
      form, h('div', { class: 'center-row' }, langButton()));
  }
}

class PinScreen extends Screen {
  async render() {
    const form = h('form', { class: 'panel narrow', testid: 'pin-form', 'aria-labelledby': 'pin-h' },
      h('h1', { id: 'pin-h', class: 'screen-title', tabindex: '-1' }, t('pin_title')),
      h('p', { class: 'hint' }, t('pin_hint')),
      field('pin', t('pin'), { type: 'password', inputmode: 'numeric', autocomplete: 'new-password',
        pattern: '[0-9]{4,12}', required: true, testid: 'pin-input', 'data-autofocus': true }),
      field('pin2', t('pin_again'), { type: 'password', inputmode: 'numeric',
        autocomplete: 'new-password', pattern: '[0-9]{4,12}', required: true, testid: 'pin-confirm' }),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'btn primary', testid: 'pin-submit' }, t('set_pin')),
        h('button', { type: 'button', class: 'btn', testid: 'pin-skip',
          onclick: () => done(this, 'pin') }, t('skip'))));
    onSubmit(form, async () => {
      const pin = form.elements.pin.value;
      if (!/^\d{4,12}$/.test(pin)) { formError(form, t('pin_format')); return; }
      if (pin !== form.elements.pin2.value) { formError(form, t('pin_mismatch')); return; }
      await api.setPin(pin);
      done(this, 'pin');
    });
    return h('div', { class: 'center' }, form);
  }
}

class LockScreen extends Screen {
  async render() {
    const s = await api.state();
    const form = h('form', { class: 'panel narrow', testid: 'unlock-form', 'aria-labelledby': 'lock-h' },
      h('h1', { id: 'lock-h', class: 'screen-title', tabindex: '-1' }, lockIcon(), t('locked_title')),
      s?.user ? h('p', { class: 'hint', testid: 'lock-user' },
        s.user.display_name || s.user.username || String(s.user)) : null,
      this.params.reason ? h('p', { class: 'hint', role: 'status' }, this.params.reason) : null,
      field('secret', t('pin_or_password'), { type: 'password', required: true,
        autocomplete: 'current-password', testid: 'unlock-secret', 'data-autofocus': true, hint: t('unlock_hint') }),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'btn primary', testid: 'unlock-submit' }, t('unlock')),
        h('button', { type: 'button', class: 'btn ghost', testid: 'unlock-logout',
          onclick: () => this.dispatchEvent(new CustomEvent('bl-logout', { bubbles: true })) },
        t('logout'))));
    onSubmit(form, async () => {
      const ok = await api.unlock(form.elements.secret.value);
      if (ok === false) throw new Error(t('pin_or_password'));
      done(this, 'unlock');
    });
    return h('div', { class: 'center' }, form, h('div', { class: 'center-row' }, langButton()));
  }
}

define('bl-login', LoginScreen);
define('bl-pin-setup', PinScreen);
define('bl-lock', LockScreen);
