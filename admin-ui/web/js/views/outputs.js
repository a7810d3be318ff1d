// Outputs: every participant's outputs, newest or oldest first or by seat,
// one seat's alone; a lightbox to look closer (arrow keys step through),
// download, and the spotlight for the projector view.

import {h, setText, setAttr, reconcile, safeUrl, fmtBytes, fmtTime, seatOf} from '../dom.js';
import {mimeOf, outputMedia, downloadName} from '../job.js';
import {modal} from '../dialogs.js';

const PAGE = 60;
const MAX = 600;
const ORDERS = [['newest', 'Newest first'], ['oldest', 'Oldest first'], ['seat', 'By seat']];

const keyOf = (o) => `${o.job_id}\u0000${o.name}`;

export default function outputsView(ctx) {
  const {api} = ctx;
  let outputs = [];
  let next = '';

  // ---- order and filter ----
  const order = h('select', {id: 'outputs-order'}, ORDERS.map(([v, t]) => h('option', {value: v}, t)));
  const seat = h('select', {id: 'outputs-seat'}, h('option', {value: ''}, 'All seats'));
  const count = h('span', {class: 'hint', id: 'outputs-count'});
  order.addEventListener('change', () => ctx.act('Load the outputs', load));
  seat.addEventListener('change', () => ctx.act('Load the outputs', load));

  const grid = h('div', {id: 'output-grid', class: 'gallery'});
  const empty = h('p', {class: 'empty'}, 'No outputs yet.');
  const more = h('button', {type: 'button', id: 'outputs-more', hidden: true}, 'Load more');
  more.addEventListener('click', () => ctx.act('Load more outputs', loadMore, {button: more}));

  const spotMedia = h('div', {class: 'spot-media'});
  const spotText = h('p', {class: 'spot-text'});
  const spotClear = h('button', {type: 'button', id: 'spotlight-clear', class: 'danger'}, 'Take off the projector');
  spotClear.addEventListener('click', () => ctx.act('Clear the spotlight', async () => {
    await api.del('/api/spotlight');
    ctx.setSpotlight(null);
  }, {button: spotClear}));
  const spot = h('section', {class: 'spotlight-now', id: 'spotlight-now', 'aria-live': 'polite'},
    h('h3', null, 'On the projector'), spotMedia, spotText, spotClear);

  const el = h('section', null,
    h('div', {class: 'view-head'},
      h('h2', null, 'Outputs'),
      h('a', {class: 'button', href: '/admin/spotlight', target: '_blank', rel: 'noopener', id: 'projector-link'}, 'Open the projector view')),
    h('div', {class: 'filters'},
      h('label', {for: 'outputs-order'}, 'Order'), order,
      h('label', {for: 'outputs-seat'}, 'Seat'), seat, count),
    spot, empty, grid, more);

  const who = (o) => ctx.participant(o.user_id);
  const isOn = (o) => { const s = ctx.state.spotlight; return !!s && s.job_id === o.job_id && s.name === o.name; };

  function spotlight(o, button) {
    return ctx.act(`Spotlight ${o.name}`, async () => {
      await api.post('/api/spotlight', {job_id: o.job_id, name: o.name});
      ctx.setSpotlight({job_id: o.job_id, name: o.name, url: o.url, user_id: o.user_id, mime: mimeOf(o.name, o.mime)});
    }, {button, ok: 'On the projector now'});
  }

  function download(o, {label = '⤓', ...attrs} = {}) {
    return h('a', {class: 'button small download', href: safeUrl(o.url) || null, download: downloadName(o, seatOf(o.user_id)),
      title: 'Download', 'aria-label': `Download ${o.name} by ${who(o)}`, ...attrs}, label);
  }

  function createCard(o) {
    const f = h('figure', {class: 'out-card'});
    f.media = h('button', {type: 'button', class: 'media'}, outputMedia(o, `${o.name} by ${who(o)}`));
    f.media.addEventListener('click', () => lightbox.show(f.o));
    f.who = h('span', {class: 'who'});
    f.name = h('span', {class: 'name'});
    f.meta = h('span', {class: 'meta'});
    f.btn = h('button', {type: 'button', class: 'spot'}, '★ Spotlight');
    f.btn.addEventListener('click', () => spotlight(f.o, f.btn));
    f.dl = download(o);
    f.append(f.media, h('figcaption', null, f.who, f.name, f.meta), h('div', {class: 'out-actions'}, f.btn, f.dl));
    return f;
  }

  function updateCard(f, o) {
    f.o = o;
    setAttr(f, 'data-job', o.job_id);
    setAttr(f, 'data-name', o.name);
    setAttr(f.media, 'aria-label', `Look at ${o.name} by ${who(o)}`);
    setText(f.who, who(o));
    setText(f.name, o.name);
    setText(f.meta, [o.job_number ? `#${o.job_number}` : '', fmtTime(o.created_at), fmtBytes(o.size)].filter(Boolean).join(' · '));
    const on = isOn(o);
    f.classList.toggle('on', on);
    setAttr(f.btn, 'aria-pressed', on ? 'true' : 'false');
    setAttr(f.btn, 'aria-label', `Spotlight ${o.name} by ${who(o)}`);
  }

  function render() {
    reconcile(grid, outputs, keyOf, createCard, updateCard);
    empty.hidden = outputs.length > 0;
    setText(empty, seat.value ? `${ctx.participant(seat.value)} has no outputs yet.` : 'No outputs yet.');
    more.hidden = !next;
    setText(count, outputs.length ? `${outputs.length}${next ? '+' : ''} shown` : '');
    renderSpot();
    lightbox.refresh();
  }

  function renderSpot() {
    const s = ctx.state.spotlight;
    spot.hidden = !s;
    if (!s) { spotMedia.replaceChildren(); return; }
    if (spotMedia.__key !== keyOf(s)) {
      spotMedia.__key = keyOf(s);
      spotMedia.replaceChildren(outputMedia(s, `${s.name} by ${who(s)}`, {controls: true}));
    }
    setText(spotText, `${s.name} · ${who(s)}`);
  }

  // ---- lightbox ----
  const lightbox = (() => {
    const box = modal({id: 'lightbox', label: 'Output', wide: true});
    box.el.classList.add('lightbox');
    let at = -1;
    let spotBtn = null;
    const step = (d) => { if (at >= 0 && outputs.length) show(outputs[(at + d + outputs.length) % outputs.length]); };
    box.el.addEventListener('keydown', (e) => {
      if (e.target.closest && e.target.closest('video')) return;
      if (e.key === 'ArrowRight') { e.preventDefault(); step(1); }
      if (e.key === 'ArrowLeft') { e.preventDefault(); step(-1); }
    });
    box.onClose = () => { at = -1; };
    function show(o) {
      at = outputs.findIndex((x) => keyOf(x) === keyOf(o));
      const prevBtn = h('button', {type: 'button', id: 'lightbox-prev', 'aria-label': 'Previous output', onclick: () => step(-1)}, '‹');
      const nextBtn = h('button', {type: 'button', id: 'lightbox-next', 'aria-label': 'Next output', onclick: () => step(1)}, '›');
      spotBtn = h('button', {type: 'button', id: 'lightbox-spot'}, '★ Spotlight');
      spotBtn.addEventListener('click', () => spotlight(o, spotBtn));
      markSpot(o);
      box.open(`${o.name} · ${who(o)}`,
        h('div', {class: 'lb-stage', dataset: {job: o.job_id, name: o.name}}, prevBtn,
          h('a', {class: 'lb-media', href: safeUrl(o.url) || null, target: '_blank', rel: 'noopener', 'aria-label': `Open ${o.name} in a new tab`},
            outputMedia(o, `${o.name} by ${who(o)}`, {controls: true, lazy: false})), nextBtn),
        h('p', {class: 'lb-caption'},
          [o.job_number ? `Job #${o.job_number}` : '', fmtTime(o.created_at), fmtBytes(o.size),
            at >= 0 ? `${at + 1} of ${outputs.length}${next ? '+' : ''}` : ''].filter(Boolean).join(' · ')),
        h('div', {class: 'dialog-actions'},
          o.job_number ? h('button', {type: 'button', id: 'lightbox-job', onclick: () => { box.close(); ctx.openJob(o.job_id); }}, 'Open the job') : null,
          download(o, {id: 'lightbox-download', label: 'Download'}), spotBtn));
      (box.el.contains(document.activeElement) ? document.activeElement : nextBtn).focus();
    }
    function markSpot(o) {
      spotBtn.classList.toggle('on', isOn(o));
      setAttr(spotBtn, 'aria-pressed', isOn(o) ? 'true' : 'false');
    }
    return {show, refresh: () => { if (at >= 0 && outputs[at]) markSpot(outputs[at]); }};
  })();

  // ---- loading ----
  const query = () => {
    const p = new URLSearchParams({limit: String(PAGE), order: order.value});
    if (seat.value) p.set('user_id', seat.value);
    return p;
  };

  // Changing the order and the seat quickly sends two loads: only the
  // latest one's answer counts.
  let seq = 0;
  async function load() {
    const mine = ++seq;
    const r = await api.get(`/api/outputs?${query()}`);
    if (mine !== seq) return;
    outputs = (r && r.outputs) || [];
    next = (r && r.next) || '';
    render();
  }

  async function loadMore() {
    if (!next) return;
    const p = query();
    p.set('before', next);
    const mine = seq;
    const r = await api.get(`/api/outputs?${p}`);
    if (mine !== seq) return; // the order or the seat changed meanwhile
    const have = new Set(outputs.map(keyOf));
    outputs = outputs.concat(((r && r.outputs) || []).filter((o) => !have.has(keyOf(o))));
    next = (r && r.next) || '';
    render();
  }

  function renderSeatOptions() {
    const keep = seat.value;
    seat.replaceChildren(h('option', {value: ''}, 'All seats'),
      ...[...ctx.state.seats].sort((a, b) => a.seat - b.seat).map((s) =>
        h('option', {value: s.user_id}, s.name ? `${s.seat} · ${s.name}` : `Seat ${s.seat}`)));
    seat.value = keep;
  }

  // A new output goes where the order puts it, if that part is loaded.
  ctx.on('job_finished', (job) => {
    if (!view.loaded || job.status !== 'completed' || !job.result || !job.result.outputs) return;
    if (seat.value && job.user_id !== seat.value) return;
    const have = new Set(outputs.map(keyOf));
    const fresh = job.result.outputs.map((o) => ({
      job_id: job.id, job_number: job.number, user_id: job.user_id, name: o.name || o.filename,
      url: o.url || `/api/jobs/${api.seg(job.id)}/outputs/${api.seg(o.name || o.filename)}`,
      mime: mimeOf(o.filename || o.name), size: o.size, created_at: job.completed_at || new Date().toISOString(),
    })).filter((o) => o.url && !have.has(keyOf(o)));
    if (!fresh.length) return;
    if (order.value === 'newest') {
      outputs = fresh.concat(outputs).slice(0, MAX);
    } else if (order.value === 'oldest') {
      if (next) return; // the end is not loaded yet
      outputs = outputs.concat(fresh);
    } else {
      const n = seatOf(job.user_id) || 0;
      const i = outputs.findIndex((o) => (seatOf(o.user_id) || 0) >= n);
      if (i < 0 && next) return;
      outputs.splice(i < 0 ? outputs.length : i, 0, ...fresh);
    }
    render();
  });
  ctx.on('spotlight', () => { if (view.loaded) render(); });
  ctx.on('seats', () => { renderSeatOptions(); if (view.loaded) render(); });

  const view = {id: 'outputs', title: 'Outputs', el, load};
  return view;
}
