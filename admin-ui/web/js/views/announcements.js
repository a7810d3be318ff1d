// Announcements: a message that appears in every participant's UI.

import {h, setText, setAttr, reconcile, fmtTime, confirmButton} from '../dom.js';

const MAX_LEN = 500;

export default function announcementsView(ctx) {
  const {api} = ctx;
  let items = [];

  const text = h('textarea', {id: 'announce-text', rows: '3', maxlength: String(MAX_LEN),
    placeholder: 'e.g. Break until 11:00. Your queued jobs keep running.'});
  const left = h('span', {class: 'hint', id: 'announce-left'});
  const send = h('button', {type: 'submit', class: 'primary', id: 'announce-send'}, 'Send to everyone');
  const form = h('form', {id: 'announce-form', class: 'stack'},
    h('label', {for: 'announce-text'}, 'Message'), text, h('div', {class: 'row'}, send, left));
  const count = () => setText(left, `${MAX_LEN - text.value.length} characters left`);
  text.addEventListener('input', count);
  count();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = text.value.trim();
    if (!t) { ctx.toast('Write a message first.', 'error'); text.focus(); return; }
    ctx.act('Send the announcement', async () => {
      const a = await api.post('/api/announcements', {text: t});
      text.value = '';
      count();
      if (a && a.id) add(a);
      else await load();
    }, {button: send, ok: 'Announcement sent'});
  });

  const list = h('ol', {id: 'announce-list', class: 'announcements'});
  const empty = h('p', {class: 'empty'}, 'No announcement yet.');
  const el = h('section', null, h('h2', null, 'Announcements'), form, h('h3', null, 'Sent'), empty, list);

  function add(a) {
    items = [a, ...items.filter((x) => x.id !== a.id)];
    render();
  }

  function createItem() {
    const li = h('li');
    li.time = h('time');
    li.text = h('p', {class: 'text'});
    li.del = confirmButton('Delete', 'Sure? Delete', () => ctx.act('Delete the announcement', async () => {
      await api.del(`/api/announcements/${api.seg(li.a.id)}`);
      items = items.filter((x) => x.id !== li.a.id);
      render();
    }), {class: 'small danger'});
    li.append(li.time, li.text, li.del);
    return li;
  }

  function updateItem(li, a) {
    li.a = a;
    setAttr(li, 'data-id', a.id);
    setText(li.time, fmtTime(a.created_at));
    setAttr(li.time, 'datetime', a.created_at);
    setText(li.text, a.text);
    setAttr(li.del, 'aria-label', 'Delete this announcement');
  }

  function render() {
    items.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    reconcile(list, items, (a) => a.id, createItem, updateItem);
    empty.hidden = items.length > 0;
  }

  async function load() {
    const r = await api.get('/api/announcements');
    items = Array.isArray(r) ? r : (r && r.announcements) || [];
    render();
  }

  const view = {
    id: 'announcements',
    title: 'Announcements',
    el,
    load,
    onEvent(msg) {
      if (msg.type === 'announcement' && msg.data && msg.data.id) add(msg.data);
    },
  };
  return view;
}
