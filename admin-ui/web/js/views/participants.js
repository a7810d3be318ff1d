// Participants: seats with name, join link and code, status, quota;
// rename, quota, disable/enable, rotate code, sign out, add, remove; the QR
// sheet. The server pages and searches (2,000 seats stay quick); "Hide
// codes" masks the join codes while the screen is projected.

import {h, setText, setAttr, reconcile, safeUrl, confirmButton, debounce} from '../dom.js';

const PAGE = 50;
const HIDE_KEY = 'workshop.admin.hideCodes';
const STATES = [['', 'Everyone'], ['online', 'Online'], ['offline', 'Offline'], ['busy', 'With jobs'], ['disabled', 'Disabled']];

export default function participantsView(ctx) {
  const {api} = ctx;
  const seg = api.seg;

  let page = {seats: [], total: 0, offset: 0, summary: null};
  let offset = 0;
  let hideCodes = false;
  try { hideCodes = localStorage.getItem(HIDE_KEY) === '1'; } catch { /* private mode */ }
  const revealed = new Set(); // seats whose code was shown while hidden

  const tbody = h('tbody', {id: 'seat-rows'});
  const empty = h('p', {class: 'empty'}, 'No seats yet. Add one below.');
  const summary = h('p', {class: 'summary', id: 'seat-summary', role: 'status'});
  const warning = h('p', {class: 'warning', id: 'join-warning', role: 'alert', hidden: true});

  // ---- search, filter, pages, hide codes ----
  const q = h('input', {type: 'search', id: 'seat-search', autocomplete: 'off', placeholder: 'seat number, name or code'});
  const state = h('select', {id: 'seat-state'}, STATES.map(([v, t]) => h('option', {value: v}, t)));
  const hide = h('input', {type: 'checkbox', id: 'hide-codes', role: 'switch', checked: hideCodes});
  const prev = h('button', {type: 'button', id: 'seats-prev', 'aria-label': 'Previous page of seats'}, '‹ Previous');
  const next = h('button', {type: 'button', id: 'seats-next', 'aria-label': 'Next page of seats'}, 'Next ›');
  const range = h('span', {class: 'hint', id: 'seats-range'});
  q.addEventListener('input', debounce(() => { offset = 0; reload(); }, 250, 1000));
  state.addEventListener('change', () => { offset = 0; reload(); });
  prev.addEventListener('click', () => { offset = Math.max(0, offset - PAGE); reload(); });
  next.addEventListener('click', () => { offset += PAGE; reload(); });
  hide.addEventListener('change', () => {
    hideCodes = hide.checked;
    revealed.clear();
    try { localStorage.setItem(HIDE_KEY, hideCodes ? '1' : '0'); } catch { /* private mode */ }
    render();
  });

  const addSeat = h('input', {type: 'number', id: 'add-seat', min: '1', inputmode: 'numeric', placeholder: 'next free'});
  const addName = h('input', {type: 'text', id: 'add-name', maxlength: '80', placeholder: 'e.g. Alice', autocomplete: 'off'});
  const addBtn = h('button', {type: 'submit', class: 'primary'}, 'Add seat');
  const addForm = h('form', {class: 'inline-form', id: 'add-seat-form'},
    h('label', {for: 'add-seat'}, 'Seat number ', h('small', null, '(optional)')), addSeat,
    h('label', {for: 'add-name'}, 'Name'), addName, addBtn);
  addForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = {};
    if (addSeat.value) body.seat = Number(addSeat.value);
    if (addName.value.trim()) body.name = addName.value.trim();
    ctx.act('Add a seat', async () => {
      const s = await api.post('/api/seats', body);
      addSeat.value = '';
      addName.value = '';
      await Promise.all([ctx.reloadSeats(), reload()]);
      return s;
    }, {button: addBtn, ok: (s) => (s && s.seat ? `Seat ${s.seat} added` : 'Seat added')});
  });

  const el = h('section', null,
    h('div', {class: 'view-head'},
      h('h2', null, 'Participants'),
      h('a', {class: 'button', href: '/admin/seats/print', target: '_blank', rel: 'noopener', id: 'print-link'}, 'Print the QR sheet')),
    h('div', {class: 'filters'},
      h('label', {for: 'seat-search'}, 'Find'), q,
      h('label', {for: 'seat-state'}, 'Show'), state,
      h('label', {class: 'switch', for: 'hide-codes'}, hide, h('span', null, 'Hide codes'))),
    warning, summary,
    h('div', {class: 'table-wrap'},
      h('table', {class: 'seats'},
        h('thead', null, h('tr', null,
          ['Seat', 'Name', 'Status', 'Pending', 'Running', 'Done', 'Max pending', 'Join code', ''].map((t) => h('th', {scope: 'col'}, t)))),
        tbody)),
    empty,
    h('nav', {class: 'pager', 'aria-label': 'Pages of seats'}, prev, range, next),
    h('h3', null, 'Add a seat'), addForm);

  // ---- loading ----
  let seq = 0;
  async function reload() {
    const mine = ++seq;
    const params = new URLSearchParams({offset: String(offset), limit: String(PAGE)});
    if (q.value.trim()) params.set('q', q.value.trim());
    if (state.value) params.set('state', state.value);
    const r = await api.get(`/api/seats?${params}`);
    if (mine !== seq) return; // a newer search answered first
    if (r.total > 0 && r.offset >= r.total) { offset = Math.max(0, Math.floor((r.total - 1) / PAGE) * PAGE); return reload(); }
    page = r;
    render();
  }
  const reloadSoon = debounce(() => reload().catch(() => {}), 1500, 5000);

  function patchSeat(seat, body, what, button, ok) {
    return ctx.act(`${what} (seat ${seat.seat})`, async () => {
      const s = await api.patch(`/api/seats/${seg(seat.seat)}`, body);
      await Promise.all([ctx.reloadSeats(), reload()]);
      return s;
    }, {button, ok});
  }

  function quotaWords(s) {
    const m = s.max_pending;
    if (m == null || m < 0) return `Seat ${s.seat} uses the default limit of pending jobs`;
    if (m === 0) return `Seat ${s.seat} may queue any number of jobs`;
    return `Seat ${s.seat} may hold ${m} pending job${m === 1 ? '' : 's'} at a time`;
  }

  // ---- rows ----
  function createRow() {
    const tr = h('tr');
    tr.seatNo = h('th', {scope: 'row', class: 'seat-no'});
    tr.name = h('input', {type: 'text', class: 'name', maxlength: '80', autocomplete: 'off'});
    tr.name.addEventListener('change', () => {
      const name = tr.name.value.trim();
      patchSeat(tr.seat, {name}, 'Rename', null, name ? `Seat ${tr.seat.seat} is now ${name}` : `Seat ${tr.seat.seat} has no name now`);
    });
    tr.name.addEventListener('keydown', (e) => { if (e.key === 'Enter') tr.name.blur(); });
    tr.status = h('span', {class: 'online'});
    tr.pending = h('td', {class: 'n'});
    tr.running = h('td', {class: 'n'});
    tr.done = h('td', {class: 'n'});
    tr.quota = h('input', {type: 'number', class: 'quota', min: '0', inputmode: 'numeric', placeholder: 'default'});
    tr.quota.addEventListener('change', () => {
      const v = tr.quota.value.trim();
      patchSeat(tr.seat, {max_pending: v === '' ? -1 : Math.max(0, Math.floor(Number(v)))}, 'Set the quota', null, quotaWords);
    });
    tr.code = h('code', {class: 'code'});
    tr.link = h('a', {class: 'join', target: '_blank', rel: 'noopener'}, tr.code);
    tr.reveal = h('button', {type: 'button', class: 'small reveal'});
    tr.reveal.addEventListener('click', () => {
      if (revealed.has(tr.seat.seat)) revealed.delete(tr.seat.seat);
      else revealed.add(tr.seat.seat);
      updateRow(tr, tr.seat);
    });
    tr.copy = h('button', {type: 'button', class: 'small'}, 'Copy link');
    tr.copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(tr.seat.join_url);
        ctx.toast(`Copied the join link of seat ${tr.seat.seat}`, 'ok');
      } catch {
        ctx.toast('Copying needs a secure page (https); select the link instead.', 'error');
      }
    });
    tr.toggle = h('button', {type: 'button', class: 'small'});
    tr.toggle.addEventListener('click', () =>
      patchSeat(tr.seat, {disabled: !tr.seat.disabled}, tr.seat.disabled ? 'Enable' : 'Disable', tr.toggle,
        (s) => `Seat ${s.seat} ${s.disabled ? 'disabled' : 'enabled'}`));
    tr.rotate = confirmButton('New code', 'Sure? Old link stops', () =>
      patchSeat(tr.seat, {rotate_code: true}, 'Rotate the code', null, (s) => `Seat ${s.seat} has a new join code`), {class: 'small'});
    tr.signOut = confirmButton('Sign out', 'Sure? Sign out', () =>
      ctx.act(`Sign out seat ${tr.seat.seat}`, async () => {
        const r = await api.post(`/api/seats/${seg(tr.seat.seat)}/signout`, {});
        await Promise.all([ctx.reloadSeats(), reload()]);
        return r;
      }, {ok: (r) => `Seat ${tr.seat.seat} signed out` + (r ? ` (${r.sessions_ended} session${r.sessions_ended === 1 ? '' : 's'})` : '')}), {class: 'small'});
    tr.removeBtn = confirmButton('Remove', 'Sure? Remove', () =>
      ctx.act(`Remove seat ${tr.seat.seat}`, async () => {
        await api.del(`/api/seats/${seg(tr.seat.seat)}`);
        await Promise.all([ctx.reloadSeats(), reload()]);
      }), {class: 'small danger'});
    tr.actions = h('div', {class: 'row-actions'}, tr.toggle, tr.rotate, tr.signOut, tr.removeBtn);
    tr.append(tr.seatNo, h('td', null, tr.name), h('td', null, tr.status), tr.pending, tr.running, tr.done,
      h('td', null, tr.quota),
      h('td', {class: 'join-cell'}, tr.link, ' ', tr.reveal, ' ', tr.copy),
      h('td', null, tr.actions));
    return tr;
  }

  function updateRow(tr, s) {
    tr.seat = s;
    setAttr(tr, 'data-seat', s.seat);
    tr.classList.toggle('disabled', !!s.disabled);
    setText(tr.seatNo, s.seat);
    if (document.activeElement !== tr.name) tr.name.value = s.name || '';
    setAttr(tr.name, 'aria-label', `Name of seat ${s.seat}`);
    const online = s.online === true, off = s.online === false;
    setText(tr.status, s.disabled ? 'Disabled' : online ? 'Online' : off ? 'Offline' : '—');
    setAttr(tr.status, 'data-state', s.disabled ? 'disabled' : online ? 'online' : 'offline');
    setText(tr.pending, s.pending ?? '—');
    setText(tr.running, s.running ?? '—');
    setText(tr.done, s.done ?? '—');
    if (document.activeElement !== tr.quota) tr.quota.value = s.max_pending != null && s.max_pending >= 0 ? String(s.max_pending) : '';
    setAttr(tr.quota, 'aria-label', `Max pending jobs of seat ${s.seat} (empty: the default)`);
    // Hidden codes leave nothing readable: not the text, the title or the label.
    const masked = hideCodes && !revealed.has(s.seat);
    const href = safeUrl(s.join_url, {external: true});
    setAttr(tr.link, 'href', href || null);
    setAttr(tr.link, 'title', masked ? 'Join link (code hidden)' : href || '');
    setAttr(tr.link, 'aria-label', masked ? `Join link of seat ${s.seat}, code hidden` : `Join link of seat ${s.seat}, code ${s.code || ''}`);
    setText(tr.code, masked ? '••••••••••' : s.code || '—');
    tr.code.classList.toggle('masked', masked);
    tr.reveal.hidden = !hideCodes;
    setText(tr.reveal, masked ? 'Show' : 'Hide');
    setAttr(tr.reveal, 'aria-label', `${masked ? 'Show' : 'Hide'} the code of seat ${s.seat}`);
    setAttr(tr.copy, 'aria-label', `Copy the join link of seat ${s.seat}`);
    setText(tr.toggle, s.disabled ? 'Enable' : 'Disable');
    setAttr(tr.toggle, 'aria-label', `${s.disabled ? 'Enable' : 'Disable'} seat ${s.seat}`);
    setAttr(tr.rotate, 'aria-label', `New join code for seat ${s.seat}`);
    setAttr(tr.signOut, 'aria-label', `Sign out every browser of seat ${s.seat}`);
    setAttr(tr.removeBtn, 'aria-label', `Remove seat ${s.seat}`);
  }

  function render() {
    const seats = page.seats || [];
    reconcile(tbody, seats, (s) => s.seat, createRow, updateRow);
    const filtered = q.value.trim() || state.value;
    empty.hidden = seats.length > 0;
    setText(empty, filtered ? 'No seat matches.' : 'No seats yet. Add one below.');
    const sum = page.summary || {};
    setText(summary, `${sum.seats ?? 0} seat${sum.seats === 1 ? '' : 's'} · ${sum.online ?? 0} online · ${sum.busy ?? 0} with jobs` +
      (sum.disabled ? ` · ${sum.disabled} disabled` : '') + (filtered ? ` · ${page.total} match` : ''));
    const from = page.total ? page.offset + 1 : 0;
    setText(range, `${from}–${page.offset + seats.length} of ${page.total}`);
    prev.disabled = page.offset <= 0;
    next.disabled = page.offset + seats.length >= page.total;
    el.classList.toggle('codes-hidden', hideCodes);
    // Links no phone can open (the server reached as 127.0.0.1): say so here.
    warning.hidden = !page.join_warning;
    setText(warning, page.join_warning || '');
  }

  // Live counts come from the server: refresh the page shown, quietly.
  ctx.on('seats', () => { if (view.loaded && ctx.isActive('participants')) reloadSoon(); });

  const view = {
    id: 'participants',
    title: 'Participants',
    el,
    load: () => reload(),
    show: () => { if (view.loaded) reloadSoon(); },
    onEvent(msg) {
      if ((msg.type === 'job_created' || msg.type === 'job_updated') && ctx.isActive('participants')) reloadSoon();
    },
  };
  return view;
}
