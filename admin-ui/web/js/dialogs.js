// Modal dialogs on the native <dialog>: it keeps focus inside, Esc closes
// it, and focus goes back where it was when it closes.

import {h, replace} from './dom.js';

/**
 * modal({id, label, wide}) makes a dialog with a heading, a close button and
 * a body; open(title, ...content) fills and shows it.
 */
export function modal({id, label = 'Dialog', wide = false} = {}) {
  const title = h('h2', {id: `${id}-title`});
  const body = h('div', {class: 'dialog-body'});
  const close = h('button', {type: 'button', class: 'dialog-close', 'aria-label': `Close the ${label.toLowerCase()}`}, '✕');
  const el = h('dialog', {id, class: ['dialog', wide && 'wide'], 'aria-labelledby': `${id}-title`},
    h('div', {class: 'dialog-head'}, title, close), body);
  const m = {el, body, title, onClose: null};
  close.addEventListener('click', () => el.close());
  // A click on the backdrop (the dialog element itself, outside its box) closes it.
  el.addEventListener('click', (e) => {
    if (e.target !== el) return;
    const r = el.getBoundingClientRect();
    if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom) el.close();
  });
  el.addEventListener('close', () => { if (m.onClose) m.onClose(); });
  m.open = (text, ...content) => {
    title.textContent = text;
    replace(body, content);
    if (!el.isConnected) document.body.append(el);
    if (!el.open) el.showModal();
    return m;
  };
  m.close = () => { if (el.open) el.close(); };
  return m;
}

let confirmBox = null;

/**
 * confirmAction({title, text, ok, danger}) asks once, in a dialog whose
 * focused button is the safe one; it answers true when confirmed.
 */
export function confirmAction({title, text, ok = 'OK', cancel = 'Keep them', danger = true}) {
  confirmBox = confirmBox || modal({id: 'confirm-dialog', label: 'Confirmation'});
  return new Promise((resolve) => {
    let answer = false;
    const yes = h('button', {type: 'button', id: 'confirm-ok', class: danger ? 'danger-solid' : 'primary'}, ok);
    const no = h('button', {type: 'button', id: 'confirm-cancel'}, cancel);
    yes.addEventListener('click', () => { answer = true; confirmBox.close(); });
    no.addEventListener('click', () => confirmBox.close());
    confirmBox.onClose = () => { confirmBox.onClose = null; resolve(answer); };
    confirmBox.open(title, ...[text].flat().map((t) => (t instanceof Node ? t : h('p', null, t))),
      h('div', {class: 'dialog-actions'}, no, yes));
    no.focus();
  });
}
