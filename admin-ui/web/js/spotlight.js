// The projector view: the spotlighted output full screen, switching live.

import {h, setText, safeUrl, seatOf} from './dom.js';
import * as api from './api.js';
import {Live} from './live.js';

const $ = (s) => document.querySelector(s);
const stats = window.__spotlightStats = {shown: 0, key: '', messages: 0};
let seats = new Map();
let current = null;

function who(userId) {
  const s = seats.get(userId);
  const n = s ? s.seat : seatOf(userId);
  if (s && s.name) return `Seat ${n} · ${s.name}`;
  return n ? `Seat ${n}` : '';
}

function mimeOf(s) {
  if (s.mime) return s.mime;
  return /\.(mp4|webm|mov|mkv)$/i.test(s.name || s.url || '') ? 'video/mp4' : 'image/png';
}

function show(s) {
  const stage = $('#stage');
  const key = s && s.job_id ? `${s.job_id}\u0000${s.name}` : '';
  if (key === stats.key) { caption(s); return; }
  stats.key = key;
  current = key ? s : null;
  if (!key) {
    stage.replaceChildren(h('p', {id: 'idle', class: 'idle'}, document.title.split(' · ')[0]));
    caption(null);
    return;
  }
  const src = safeUrl(s.url);
  const el = mimeOf(s).startsWith('video/')
    ? h('video', {src: src || null, autoplay: true, muted: true, loop: true, playsinline: true, class: 'media', 'aria-label': s.name})
    : h('img', {src: src || null, alt: `${s.name}${who(s.user_id) ? ' by ' + who(s.user_id) : ''}`, class: 'media'});
  if (el.tagName === 'VIDEO') el.muted = true; // autoplay needs it as a property too
  el.dataset.job = s.job_id;
  el.dataset.name = s.name;
  const ready = () => { el.classList.add('in'); for (const old of stage.querySelectorAll('.media')) if (old !== el) old.remove(); };
  el.addEventListener(el.tagName === 'VIDEO' ? 'loadeddata' : 'load', ready, {once: true});
  el.addEventListener('error', ready, {once: true});
  const idle = $('#idle');
  if (idle) idle.remove();
  stage.append(el);
  stats.shown++;
  caption(s);
}

function caption(s) {
  const c = $('#caption');
  const text = s && s.job_id ? who(s.user_id) : '';
  c.hidden = !text;
  setText(c, text);
}

async function loadSeats() {
  try {
    const r = await api.get('/api/seats');
    seats = new Map(((r && r.seats) || []).map((s) => [s.user_id, s]));
  } catch { /* names are optional */ }
}

async function load() {
  const [s] = await Promise.all([api.get('/api/spotlight'), loadSeats()]);
  stats.key = '';
  show(s);
}

function signin() {
  $('#signin').hidden = false;
  $('#conn').hidden = true;
}

async function boot() {
  api.onUnauthorized(signin);
  let ok = false;
  try { ok = await api.refreshSession(); } catch { /* shown as reconnecting */ }
  if (!ok) { signin(); return; }
  const live = new Live({
    onMessage: (m) => {
      stats.messages++;
      if (m.type === 'spotlight') show(m.data);
      else if (m.type === 'activity' && m.data && m.data.kind === 'seat') loadSeats().then(() => caption(current));
    },
    onState: (st) => { $('#conn').hidden = st.state === 'open' || (!live.everOpened && st.state === 'connecting'); },
    onOpen: () => load().catch(() => {}),
    beforeRetry: async () => {
      try { if (await api.refreshSession()) return true; } catch { return true; }
      signin();
      return false;
    },
  });
  live.start();
}

// Full screen on the button, F, or a double click; the pointer and the
// button hide when the mouse rests.
function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else document.documentElement.requestFullscreen().catch(() => {});
}
$('#fullscreen').addEventListener('click', toggleFullscreen);
document.addEventListener('dblclick', toggleFullscreen);
document.addEventListener('keydown', (e) => { if (e.key === 'f' || e.key === 'F') toggleFullscreen(); });
let idleTimer = 0;
const wake = () => {
  document.body.classList.remove('resting');
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => document.body.classList.add('resting'), 2500);
};
document.addEventListener('mousemove', wake);
wake();

boot();
