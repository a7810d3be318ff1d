// Outputs: every participant's outputs, newest first, with a spotlight
// button for the projector view.

import {h, setText, setAttr, reconcile, safeUrl, fmtBytes, fmtTime} from '../dom.js';

const PAGE = 60;
const MAX = 600;

export function mimeOf(name, mime) {
  if (mime) return mime;
  const ext = String(name || '').toLowerCase().split('.').pop();
  return {png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif',
    mp4: 'video/mp4', webm: 'video/webm', mov: 'video/quicktime', mkv: 'video/x-matroska'}[ext] || '';
}

const keyOf = (o) => `${o.job_id}\u0000${o.name}`;

export default function outputsView(ctx) {
  const {api} = ctx;
  let outputs = [];
  let next = '';

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
    spot, empty, grid, more);

  function media(o, {controls = false} = {}) {
    const src = safeUrl(o.url);
    const mime = mimeOf(o.name, o.mime);
    if (mime.startsWith('video/')) {
      return h('video', {src: src || null, muted: true, preload: 'metadata', playsinline: true, controls,
        'aria-label': `Video ${o.name}`});
    }
    return h('img', {src: src || null, alt: `${o.name} by ${ctx.participant(o.user_id)}`, loading: 'lazy', decoding: 'async'});
  }

  function spotlight(o, button) {
    return ctx.act(`Spotlight ${o.name}`, async () => {
      await api.post('/api/spotlight', {job_id: o.job_id, name: o.name});
      ctx.setSpotlight({job_id: o.job_id, name: o.name, url: o.url, user_id: o.user_id, mime: mimeOf(o.name, o.mime)});
    }, {button, ok: 'On the projector now'});
  }

  function createCard(o) {
    const f = h('figure', {class: 'out-card'});
    f.media = h('a', {class: 'media', target: '_blank', rel: 'noopener'}, media(o));
    f.who = h('span', {class: 'who'});
    f.name = h('span', {class: 'name'});
    f.meta = h('span', {class: 'meta'});
    f.btn = h('button', {type: 'button', class: 'spot'}, '★ Spotlight');
    f.btn.addEventListener('click', () => spotlight(f.o, f.btn));
    f.append(f.media, h('figcaption', null, f.who, f.name, f.meta), f.btn);
    return f;
  }

  function updateCard(f, o) {
    f.o = o;
    setAttr(f, 'data-job', o.job_id);
    setAttr(f, 'data-name', o.name);
    setAttr(f.media, 'href', safeUrl(o.url) || null);
    setText(f.who, ctx.participant(o.user_id));
    setText(f.name, o.name);
    setText(f.meta, [fmtTime(o.created_at), fmtBytes(o.size)].join(' · '));
    const s = ctx.state.spotlight;
    const on = !!s && s.job_id === o.job_id && s.name === o.name;
    f.classList.toggle('on', on);
    setAttr(f.btn, 'aria-pressed', on ? 'true' : 'false');
    setAttr(f.btn, 'aria-label', `Spotlight ${o.name} by ${ctx.participant(o.user_id)}`);
  }

  function render() {
    reconcile(grid, outputs, keyOf, createCard, updateCard);
    empty.hidden = outputs.length > 0;
    more.hidden = !next;
    renderSpot();
  }

  function renderSpot() {
    const s = ctx.state.spotlight;
    spot.hidden = !s;
    if (!s) { spotMedia.replaceChildren(); return; }
    if (spotMedia.__key !== keyOf(s)) {
      spotMedia.__key = keyOf(s);
      spotMedia.replaceChildren(media(s, {controls: true}));
    }
    setText(spotText, `${s.name} · ${ctx.participant(s.user_id)}`);
  }

  async function load() {
    const r = await api.get(`/api/outputs?limit=${PAGE}`);
    outputs = (r && r.outputs) || [];
    next = (r && r.next) || '';
    render();
  }

  async function loadMore() {
    if (!next) return;
    const r = await api.get(`/api/outputs?limit=${PAGE}&before=${encodeURIComponent(next)}`);
    const have = new Set(outputs.map(keyOf));
    outputs = outputs.concat(((r && r.outputs) || []).filter((o) => !have.has(keyOf(o))));
    next = (r && r.next) || '';
    render();
  }

  ctx.on('job_finished', (job) => {
    if (!view.loaded || job.status !== 'completed' || !job.result || !job.result.outputs) return;
    const have = new Set(outputs.map(keyOf));
    const fresh = job.result.outputs.map((o) => ({
      job_id: job.id, user_id: job.user_id, name: o.name || o.filename, url: o.url,
      mime: mimeOf(o.filename || o.name), size: o.size, created_at: job.completed_at || new Date().toISOString(),
    })).filter((o) => o.url && !have.has(keyOf(o)));
    if (!fresh.length) return;
    outputs = fresh.concat(outputs).slice(0, MAX);
    render();
  });
  ctx.on('spotlight', () => { if (view.loaded) render(); });
  ctx.on('seats', () => { if (view.loaded) render(); });

  const view = {id: 'outputs', title: 'Outputs', el, load};
  return view;
}
