// Participants: seats with name, join link and code, status, quota;
// rename, quota, disable/enable, rotate code, sign out, add, remove; the QR
// sheet.

import {h, setText, setAttr, reconcile, safeUrl, confirmButton} from '../dom.js';

export default function participantsView(ctx) {
  const {api} = ctx;
  const seg = api.seg;

  const tbody = h('tbody', {id: 'seat-rows'});
  const empty = h('p', {class: 'empty'}, 'No seats yet. Add one below.');
  const summary = h('p', {class: 'summary', id: 'seat-summary'});

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
      await ctx.reloadSeats();
      return s;
    }, {button: addBtn, ok: (s) => (s && s.seat ? `Seat ${s.seat} added` : 'Seat added')});
  });

  const el = h('section', null,
    h('div', {class: 'view-head'},
      h('h2', null, 'Participants'),
      h('a', {class: 'button', href: '/admin/seats/print', target: '_blank', rel: 'noopener', id: 'print-link'}, 'Print the QR sheet')),
    summary,
    h('div', {class: 'table-wrap'},
      h('table', {class: 'seats'},
        h('thead', null, h('tr', null,
          ['Seat', 'Name', 'Status', 'Pending', 'Running', 'Done', 'Max pending', 'Join code', ''].map((t) => h('th', {scope: 'col'}, t)))),
        tbody)),
    empty,
    h('h3', null, 'Add a seat'), addForm);

  function patchSeat(seat, body, what, button) {
    return ctx.act(`${what} (seat ${seat.seat})`, async () => {
      await api.patch(`/api/seats/${seg(seat.seat)}`, body);
      await ctx.reloadSeats();
    }, {button});
  }

  function createRow() {
    const tr = h('tr');
    tr.seatNo = h('th', {scope: 'row', class: 'seat-no'});
    tr.name = h('input', {type: 'text', class: 'name', maxlength: '80', autocomplete: 'off'});
    tr.name.addEventListener('change', () => patchSeat(tr.seat, {name: tr.name.value.trim()}, 'Rename'));
    tr.name.addEventListener('keydown', (e) => { if (e.key === 'Enter') tr.name.blur(); });
    tr.status = h('span', {class: 'online'});
    tr.pending = h('td', {class: 'n'});
    tr.running = h('td', {class: 'n'});
    tr.done = h('td', {class: 'n'});
    tr.quota = h('input', {type: 'number', class: 'quota', min: '0', inputmode: 'numeric', placeholder: 'default'});
    tr.quota.addEventListener('change', () => {
      const v = tr.quota.value.trim();
      patchSeat(tr.seat, {max_pending: v === '' ? -1 : Math.max(0, Math.floor(Number(v)))}, 'Set the quota');
    });
    tr.code = h('code', {class: 'code'});
    tr.link = h('a', {class: 'join', target: '_blank', rel: 'noopener'}, tr.code);
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
      patchSeat(tr.seat, {disabled: !tr.seat.disabled}, tr.seat.disabled ? 'Enable' : 'Disable', tr.toggle));
    tr.rotate = confirmButton('New code', 'Sure? Old link stops', () =>
      patchSeat(tr.seat, {rotate_code: true}, 'Rotate the code'), {class: 'small'});
    tr.signOut = confirmButton('Sign out', 'Sure? Sign out', () =>
      ctx.act(`Sign out seat ${tr.seat.seat}`, async () => {
        const r = await api.post(`/api/seats/${seg(tr.seat.seat)}/signout`, {});
        await ctx.reloadSeats();
        return r;
      }, {ok: (r) => `Seat ${tr.seat.seat} signed out` + (r ? ` (${r.sessions_ended} session${r.sessions_ended === 1 ? '' : 's'})` : '')}), {class: 'small'});
    tr.removeBtn = confirmButton('Remove', 'Sure? Remove', () =>
      ctx.act(`Remove seat ${tr.seat.seat}`, async () => {
        await api.del(`/api/seats/${seg(tr.seat.seat)}`);
        await ctx.reloadSeats();
      }), {class: 'small danger'});
    tr.append(tr.seatNo, h('td', null, tr.name), h('td', null, tr.status), tr.pending, tr.running, tr.done,
      h('td', null, tr.quota),
      h('td', {class: 'join-cell'}, tr.link, ' ', tr.copy),
      h('td', null, h('div', {class: 'row-actions'}, tr.toggle, tr.rotate, tr.signOut, tr.removeBtn)));
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
    const href = safeUrl(s.join_url, {external: true});
    setAttr(tr.link, 'href', href || null);
    setAttr(tr.link, 'title', href || '');
    setAttr(tr.link, 'aria-label', `Join link of seat ${s.seat}, code ${s.code || ''}`);
    setText(tr.code, s.code || '—');
    setAttr(tr.copy, 'aria-label', `Copy the join link of seat ${s.seat}`);
    setText(tr.toggle, s.disabled ? 'Enable' : 'Disable');
    setAttr(tr.toggle, 'aria-label', `${s.disabled ? 'Enable' : 'Disable'} seat ${s.seat}`);
    setAttr(tr.rotate, 'aria-label', `New join code for seat ${s.seat}`);
    setAttr(tr.signOut, 'aria-label', `Sign out every browser of seat ${s.seat}`);
    setAttr(tr.removeBtn, 'aria-label', `Remove seat ${s.seat}`);
  }

  function render() {
    const seats = [...ctx.state.seats].sort((a, b) => a.seat - b.seat);
    reconcile(tbody, seats, (s) => s.seat, createRow, updateRow);
    empty.hidden = seats.length > 0;
    const online = seats.filter((s) => s.online).length;
    const disabled = seats.filter((s) => s.disabled).length;
    setText(summary, `${seats.length} seat${seats.length === 1 ? '' : 's'}` +
      (seats.some((s) => s.online != null) ? ` · ${online} online` : '') +
      (disabled ? ` · ${disabled} disabled` : ''));
  }

  ctx.on('seats', () => { if (view.loaded) render(); });

  const view = {
    id: 'participants',
    title: 'Participants',
    el,
    async load() { await ctx.reloadSeats(); render(); },
    show: render,
  };
  return view;
}
