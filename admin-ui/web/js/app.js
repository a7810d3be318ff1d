// The instructor's control room: boot, sign-in, the shell (header counts,
// tabs, connection banner), the live socket and the shared state.

import {h, replace, setText, setAttr, debounce, seatOf} from './dom.js';
import * as api from './api.js';
import {Live} from './live.js';
import queueView from './views/queue.js';
import gpusView, {gpuAlert, graceLeft} from './views/gpus.js';
import participantsView from './views/participants.js';
import outputsView from './views/outputs.js';
import announcementsView from './views/announcements.js';
import workflowsView from './views/workflows.js';
import activityView from './views/activity.js';
import metricsView from './views/metrics.js';
import exportView from './views/export.js';
import {jobDetail} from './jobdetail.js';

const $ = (sel) => document.querySelector(sel);

// For tests and benchmarks: what the page handled, measured in the page.
const stats = window.__adminStats = {
  messages: 0, firstMessageAt: 0, lastMessageAt: 0, byType: {},
  renders: {}, loads: 0, readyAt: 0, connects: 0,
};

// ---- shared state ----

const listeners = new Map();
const state = {
  status: {mode: '', paused: false, counts: {}},
  seats: [],
  seatsByUser: new Map(),
  workers: [],
  workersAt: 0, // performance.now() of the workers' fetch, for countdowns
  spotlight: null,
  live: 'connecting',
};

function on(name, fn) {
  if (!listeners.has(name)) listeners.set(name, new Set());
  listeners.get(name).add(fn);
}
function emit(name, data) {
  for (const fn of listeners.get(name) || []) {
    try { fn(data); } catch (e) { console.error(name, e); }
  }
}

/** "Seat 7 · Alice", or the user id for someone without a seat. */
function participant(userId) {
  const s = state.seatsByUser.get(userId);
  const n = s ? s.seat : seatOf(userId);
  if (s && s.name) return `Seat ${n} · ${s.name}`;
  return n ? `Seat ${n}` : (userId || '—');
}

// ---- toasts and actions ----

function toast(text, kind = 'info') {
  const box = $('#toasts');
  const el = h('div', {class: ['toast', kind], role: kind === 'error' ? 'alert' : 'status'}, text);
  box.append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
  while (box.children.length > 4) box.firstChild.remove();
}

/** Run an API call for a button; errors become a toast. */
async function act(what, fn, {button, ok} = {}) {
  if (button) button.disabled = true;
  try {
    const r = await fn();
    if (ok) toast(typeof ok === 'function' ? ok(r) : ok, 'ok');
    return r;
  } catch (e) {
    if (e.status !== 401) toast(`${what}: ${e.message}`, 'error');
    return undefined;
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

// ---- loaders for shared state ----

async function loadStatus() {
  const st = await api.get('/api/queue/status');
  setStatus(st);
}

function setStatus(st) {
  if (!st) return;
  state.status = {mode: st.mode || '', paused: !!st.paused, counts: {...(st.counts || {})}};
  renderHeader();
  emit('status', state.status);
}

// The directory of seats (names for every view); the participants view
// pages through their live state itself.
async function loadSeats() {
  const r = await api.get('/api/seats?live=0');
  state.seats = (r && r.seats) || [];
  state.seatsByUser = new Map(state.seats.map((s) => [s.user_id, s]));
  emit('seats', state.seats);
}

async function loadWorkers() {
  const r = await api.get('/api/workers');
  state.workers = (r && r.workers) || [];
  state.workersAt = performance.now();
  renderHeader();
  emit('workers', state.workers);
}

async function loadSpotlight() {
  const r = await api.get('/api/spotlight');
  setSpotlight(r);
}

function setSpotlight(s) {
  state.spotlight = s && s.job_id ? s : null;
  emit('spotlight', state.spotlight);
}

const reloadStatus = debounce(() => loadStatus().catch(() => {}), 1500, 5000);
const reloadWorkers = debounce(() => loadWorkers().catch(() => {}), 150, 1000);
const reloadSeats = debounce(() => loadSeats().catch(() => {}), 2000, 6000);

/** The queue view reports job moves so the big counts stay live. */
function adjustCount(from, to) {
  const c = state.status.counts;
  if (from && c[from] > 0) c[from]--;
  if (to) c[to] = (c[to] || 0) + 1;
  renderHeader();
  emit('status', state.status);
  reloadStatus();
}

// ---- views ----

const ctx = {
  api, state, on, emit, toast, act, participant, stats, adjustCount,
  reloadStatus: () => loadStatus().catch(() => {}),
  reloadWorkers: () => loadWorkers().catch(() => {}),
  reloadSeats: () => loadSeats().catch(() => {}),
  setSpotlight,
  isActive: (id) => current === id,
  openJob: (id) => detail.open(id),
};
const detail = jobDetail(ctx);

const views = [queueView, gpusView, participantsView, outputsView, announcementsView,
  workflowsView, activityView, metricsView, exportView].map((make) => make(ctx));
const byId = new Map(views.map((v) => [v.id, v]));
let current = '';

// Sticky parts of a view (the drop targets) sit below the sticky header.
function trackHeader() {
  const header = $('.top');
  const set = () => document.documentElement.style.setProperty('--header-h', `${header.offsetHeight}px`);
  new ResizeObserver(set).observe(header);
  set();
}

function buildShell() {
  const nav = $('#tabs');
  replace(nav, views.map((v) => h('a', {href: `#${v.id}`, id: `tab-${v.id}`, class: 'tab'}, v.title)));
  replace($('#views'), views.map((v) => {
    v.el.id = `view-${v.id}`;
    v.el.classList.add('view');
    v.el.hidden = true;
    v.el.setAttribute('aria-labelledby', `tab-${v.id}`);
    return v.el;
  }));
}

async function showView(id, {load = true} = {}) {
  if (!byId.has(id)) id = 'queue';
  const v = byId.get(id);
  if (current !== id) {
    const prev = byId.get(current);
    if (prev) { prev.el.hidden = true; prev.hide && prev.hide(); }
    current = id;
    v.el.hidden = false;
    for (const t of document.querySelectorAll('#tabs .tab')) {
      setAttr(t, 'aria-current', t.id === `tab-${id}` ? 'page' : null);
    }
    document.title = `${v.title} · ${document.body.dataset.title}`;
  }
  if (!v.loaded && signedIn && load) await loadView(v);
  v.show && v.show();
}

async function loadView(v) {
  if (!v.load) { v.loaded = true; return; }
  v.loading = v.loading || (async () => {
    try {
      await v.load();
      v.loaded = true;
    } catch (e) {
      if (e.status !== 401) toast(`Could not load ${v.title}: ${e.message}`, 'error');
    } finally {
      v.loading = null;
    }
  })();
  return v.loading;
}

// ---- header ----

function renderHeader() {
  const c = state.status.counts || {};
  setText($('#count-pending'), c.pending ?? 0);
  setText($('#count-running'), c.running ?? 0);
  setText($('#count-completed'), c.completed ?? 0);
  setText($('#count-failed'), c.failed ?? 0);
  const connected = state.workers.filter((w) => w.connected);
  const busy = connected.filter((w) => w.state === 'busy').length;
  setText($('#count-gpus'), `${busy}/${connected.length}`);
  $('#paused-flag').hidden = !state.status.paused;
  renderGPUAlert();
  setText($('#mode-flag'), state.status.mode === 'fifo' ? 'First come, first served'
    : state.status.mode === 'round-robin' ? 'Round-robin' : '');
}

// A GPU host gone or an instance set aside turns the header red, with the
// jobs that wait and the time left before they are requeued, ticking.
function renderGPUAlert() {
  const alert = gpuAlert(state.workers, state.workersAt);
  const el = $('#gpu-alert');
  el.hidden = !alert;
  setText(el, alert ? alert.text : '');
  setAttr(el, 'title', alert ? 'Open the GPU hosts and instances' : null);
}

setInterval(() => {
  const counting = state.workers.some((w) => graceLeft(w, state.workersAt) != null);
  if (!counting) return;
  renderGPUAlert();
  emit('gpu-tick');
  // Past the grace the server requeues the jobs: fetch the new state.
  if (state.workers.some((w) => (w.held_jobs || []).length && graceLeft(w, state.workersAt) === 0)) reloadWorkers();
}, 1000);

// ---- live socket ----

let live = null;
let signedIn = false;
let buffering = null; // events that arrive while a snapshot loads
let hadOutage = false;

function handle(msg) {
  const now = performance.now();
  if (!stats.firstMessageAt) stats.firstMessageAt = now;
  stats.messages++;
  stats.byType[msg.type] = (stats.byType[msg.type] || 0) + 1;
  if (buffering) buffering.push(msg);
  else dispatch(msg);
  stats.lastMessageAt = performance.now();
  stats.handleMs = (stats.handleMs || 0) + (stats.lastMessageAt - now);
}

function dispatch(msg) {
  switch (msg.type) {
    case 'queue_changed':
      if (msg.queue) {
        state.status.mode = msg.queue.mode ?? state.status.mode;
        state.status.paused = !!msg.queue.paused;
        if (msg.queue.counts) state.status.counts = {...msg.queue.counts};
        renderHeader();
        emit('status', state.status);
      }
      break;
    case 'workers_changed':
      reloadWorkers();
      break;
    case 'spotlight':
      setSpotlight(msg.data);
      break;
    case 'activity':
      // A seat changed (here, in another tab or by the CLI): names and codes follow.
      if (msg.data && (msg.data.kind === 'seat' || (msg.data.kind === 'admin' && msg.data.user_id && !msg.data.job_id))) reloadSeats();
      break;
  }
  for (const v of views) {
    if (v.loaded && v.onEvent) {
      try { v.onEvent(msg); } catch (e) { console.error(v.id, msg.type, e); }
    }
  }
  detail.onEvent(msg);
}

function setLive(st) {
  state.live = st.state;
  const banner = $('#banner');
  const dot = $('#live-dot');
  dot.dataset.state = st.state;
  setText(dot, st.state === 'open' ? 'Live' : 'Offline');
  clearInterval(setLive.timer);
  if (st.state === 'open') {
    banner.hidden = true;
    document.body.classList.remove('stale');
    return;
  }
  // The first connection gets a moment before the banner shows.
  if (!live || !live.everOpened) {
    if (st.state === 'connecting') return;
  }
  document.body.classList.add('stale');
  banner.hidden = false;
  hadOutage = true;
  const msg = $('#banner-text');
  const paint = () => {
    if (st.state === 'waiting') {
      const s = Math.max(0, Math.ceil((st.retryAt - Date.now()) / 1000));
      setText(msg, `Live updates lost. Reconnecting in ${s} s (attempt ${st.attempt}); what you see may be out of date.`);
    } else {
      setText(msg, 'Live updates lost. Reconnecting…');
    }
  };
  paint();
  if (st.state === 'waiting') setLive.timer = setInterval(paint, 500);
}

async function onOpen(reconnect) {
  stats.connects++;
  if (!reconnect && stats.loads) reconnect = true; // the fallback load ran first
  await loadAll(reconnect);
}

/** Load every piece of state by REST, then apply what the socket sent meanwhile. */
async function loadAll(reconnect) {
  buffering = [];
  const t0 = performance.now();
  try {
    const shared = Promise.all([loadStatus(), loadSeats(), loadWorkers(), loadSpotlight()]);
    await shared;
    const want = views.filter((v) => v.loaded || v.id === current || v.id === 'queue');
    for (const v of views) if (!want.includes(v)) v.loaded = false;
    await Promise.all(want.map((v) => { v.loaded = false; return loadView(v); }));
  } catch (e) {
    if (e.status !== 401) toast(`Could not load the workshop state: ${e.message}`, 'error');
  } finally {
    const pending = buffering || [];
    buffering = null;
    for (const m of pending) dispatch(m);
  }
  stats.loads++;
  stats.lastLoadMs = performance.now() - t0;
  if (!stats.readyAt) stats.readyAt = performance.now();
  document.body.dataset.ready = String(stats.loads);
  if (reconnect && hadOutage) toast('Live updates are back; the page is up to date.', 'ok');
  hadOutage = false;
}

// ---- sign-in ----

function showLogin(message) {
  signedIn = false;
  if (live) { live.stop(); live = null; }
  $('#app').hidden = true;
  $('#login').hidden = false;
  setText($('#login-error'), message || '');
  $('#secret').value = '';
  $('#secret').focus();
}

async function startApp() {
  signedIn = true;
  $('#login').hidden = true;
  $('#app').hidden = false;
  // The socket opens first and its open loads the state, so no event falls
  // between the snapshot and the stream; if it is slow, load anyway.
  await showView(location.hash.slice(1) || 'queue', {load: false});
  const slow = setTimeout(() => { if (!stats.loads && signedIn) loadAll(false); }, 1500);
  live = new Live({
    onMessage: handle,
    onState: setLive,
    onOpen,
    beforeRetry: async () => {
      // A socket that closes because the session ended would retry forever.
      try {
        if (await api.refreshSession()) return true;
      } catch { return true; } // server down: keep retrying
      showLogin('Your session ended. Sign in again.');
      return false;
    },
  });
  live.start();
}

const NAME_KEY = 'workshop.admin.name';

async function boot() {
  document.body.dataset.title = document.title;
  try { $('#admin-name').value = localStorage.getItem(NAME_KEY) || ''; } catch { /* private mode */ }
  buildShell();
  trackHeader();
  api.onUnauthorized(() => { if (signedIn) showLogin('Your session ended. Sign in again.'); });
  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const btn = $('#login-submit');
    const secret = $('#secret').value;
    const name = $('#admin-name').value.trim();
    if (!secret) { setText($('#login-error'), 'Enter the admin token or password.'); return; }
    btn.disabled = true;
    setText($('#login-error'), '');
    try {
      await api.login(secret, name);
      try { localStorage.setItem(NAME_KEY, name); } catch { /* private mode */ }
      await startApp();
    } catch (err) {
      setText($('#login-error'),
        err.status === 401 ? 'That token or password is wrong.'
          : err.status === 429 ? 'Too many attempts. Wait a minute, then try again.'
            : err.message);
      $('#secret').select();
    } finally {
      btn.disabled = false;
    }
  });
  $('#logout').addEventListener('click', async () => {
    await api.logout().catch(() => {});
    showLogin('Signed out.');
  });
  $('#banner-retry').addEventListener('click', () => live && live.connectNow());
  window.addEventListener('hashchange', () => showView(location.hash.slice(1)));
  let ok = false;
  try {
    ok = await api.refreshSession();
  } catch (e) {
    showLogin(`The server cannot be reached (${e.message}). Reload to try again.`);
    return;
  }
  if (ok) await startApp();
  else showLogin('');
}

window.__admin = {state, views: byId, loadAll, showView, live: () => live};
boot();
