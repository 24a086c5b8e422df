// <bl-signature-pad>: the customer signs with a finger, stylus or mouse. `value` is a
// PNG data URL (what the ticket's `signature` takes) or '' when nothing was drawn.
import { h } from './dom.js';
import { define } from './screen.js';
import { t } from '../i18n.js';

class SignaturePad extends HTMLElement {
  connectedCallback() {
    if (this.canvas) return;
    this.drawn = false;
    this.canvas = h('canvas', { width: 600, height: 200, role: 'img', testid: 'signature-canvas',
      'aria-label': t('sign_here'), class: 'sig' });
    const clear = h('button', { type: 'button', class: 'btn small ghost', testid: 'signature-clear',
      onclick: () => this.clear() }, t('clear_signature'));
    this.append(this.canvas, clear);
    const ctx = this.canvas.getContext('2d');
    ctx.lineWidth = 3;
    ctx.lineCap = 'round';
    ctx.strokeStyle = '#111';
    let last = null;
    const at = (e) => {
      const r = this.canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * (this.canvas.width / r.width),
        (e.clientY - r.top) * (this.canvas.height / r.height)];
    };
    this.canvas.addEventListener('pointerdown', (e) => {
      this.canvas.setPointerCapture(e.pointerId);
      last = at(e);
    });
    this.canvas.addEventListener('pointermove', (e) => {
      if (!last) return;
      const p = at(e);
      ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
      last = p;
      this.drawn = true;
    });
    const end = () => { last = null; };
    this.canvas.addEventListener('pointerup', end);
    this.canvas.addEventListener('pointercancel', end);
  }

  clear() {
    this.canvas.getContext('2d').clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.drawn = false;
  }

  get value() { return this.drawn ? this.canvas.toDataURL('image/png') : ''; }
}

define('bl-signature-pad', SignaturePad);
