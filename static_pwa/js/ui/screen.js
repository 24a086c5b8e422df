// The base of every screen: a light-DOM custom element (so the app's CSS and the
// tests' selectors reach inside) that renders asynchronously from `params`.
import { h } from './dom.js';
import { t } from '../i18n.js';

export class Screen extends HTMLElement {
  constructor() { super(); this.params = {}; }

  connectedCallback() {
    this.classList.add('screen');
    this.load();
  }

  /** Re-render; screens call it after a change. */
  async load() {
    if (!this.firstChild) this.replaceChildren(h('p', { class: 'loading', role: 'status' }, t('loading')));
    try {
      const out = await this.render();
      if (!this.isConnected) return;
      this.replaceChildren(...[out].flat().filter(Boolean));
      this.dispatchEvent(new CustomEvent('bl-rendered', { bubbles: true }));
    } catch (e) {
      console.error(e);
      this.replaceChildren(h('div', { class: 'panel error', role: 'alert', testid: 'screen-error' },
        h('p', {}, t('error', { e: e?.message || String(e) })),
        h('button', { class: 'btn', type: 'button', onclick: () => this.load() }, t('retry'))));
    }
  }

  /** Subclasses return the screen's content (an element or a list). */
  async render() { return null; }
}

/** Define a custom element once (modules may be evaluated twice in tests). */
export function define(name, cls) {
  if (!customElements.get(name)) customElements.define(name, cls);
}
