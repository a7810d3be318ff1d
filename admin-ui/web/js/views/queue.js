// Queue: running and prefetched jobs with live progress and previews,
// pending jobs in dispatch order with actions and drag and drop, recent
// finished jobs; search and a seat filter over all three; bulk cancels with
// a confirmation; a single cancel waits a few seconds with an Undo, and its
// row keeps its place while the pointer is on the list, so the next row's
// Cancel never moves under it.

import {h, setText, setAttr, reconcile, fmtAge, fmtEta, fmtDuration, safeUrl, debounce, perFrame, seatOf} from '../dom.js';
import {PRIORITIES, prioName, FINISHED, errorSummary, errorBody, instanceOf} from '../job.js';
import {confirmAction} from '../dialogs.js';

const PENDING_LIMIT = 500;
const RECENT_LIMIT = 100;
const UNDO_MS = 5000;
const PREVIEW_KEY = 'workshop.admin.previews';

// Words a search understands as a status.
const STATUS_WORDS = {
  pending: 'pending', waiting: 'pending', queued: 'pending', running: 'running', prefetched: 'running',
  completed: 'completed', done: 'completed', failed: 'failed', error: 'failed', cancelled: 'cancelled', canceled: 'cancelled',
};

export default function queueView(ctx) {
  const {api, stats} = ctx;
  const seg = api.seg;

  let pending = [];            // dispatch order, as the server last said plus local changes
  const running = new Map();   // id -> job
  const progress = new Map();  // id -> latest progress
  const previews = new Map();  // id -> latest preview (data: URL); progress messages carry one now and then
  let recent = [];             // finished jobs, newest first
  const known = new Map();     // id -> status, for active jobs we have seen
  const touched = new Map();   // id -> {status, at}: local changes, to merge refetches
  const dirty = {pending: false, running: false, recent: false};
  const progressDirty = new Set();
  let dragId = '';

  // Cancels waiting for their Undo to run out, and rows kept in place after.
  const deferred = new Map();  // id -> {job, where, timer, due, sending}
  const tombs = new Map();     // id -> {job, where, index}
  const undoMs = () => (window.__admin && window.__admin.undoMs) || UNDO_MS;

  // Search and the seat filter.
  const filter = {tokens: [], user: ''};
  let seatPending = null;      // the filtered seat's pending jobs, from the server
  let seatHistory = null;      // and its finished ones
  let hit = null;              // a job found by number that no list shows

  // ---- controls ----
  const pauseBtn = h('button', {type: 'button', id: 'pause-btn', class: 'big'});
  pauseBtn.addEventListener('click', () => {
    const paused = ctx.state.status.paused;
    ctx.act(paused ? 'Resume the queue' : 'Pause the queue', async () => {
      await api.post(paused ? '/api/queue/resume' : '/api/queue/pause');
      ctx.state.status.paused = !paused;
      renderControls();
      ctx.emit('status', ctx.state.status);
      ctx.reloadStatus();
    }, {button: pauseBtn});
  });
  const modeInputs = {};
  const modeField = h('fieldset', {class: 'mode', id: 'mode'}, h('legend', null, 'Queue order'),
    [['fifo', 'First come, first served'], ['round-robin', 'Round-robin (fair)']].map(([value, label]) => {
      const input = h('input', {type: 'radio', name: 'queue-mode', value, id: `mode-${value}`});
      input.addEventListener('change', () => {
        if (!input.checked) return;
        ctx.act('Switch the queue order', async () => {
          await api.put('/api/queue/mode', {mode: value});
          ctx.state.status.mode = value;
          ctx.emit('status', ctx.state.status);
          ctx.reloadStatus();
          loadPending();
        });
      });
      modeInputs[value] = input;
      return h('label', {class: 'seg', for: `mode-${value}`}, input, h('span', null, label));
    }));

  // ---- search and filter ----
  const search = h('input', {type: 'search', id: 'job-search', autocomplete: 'off',
    placeholder: '#42, seat 7, a name, failed…', 'aria-describedby': 'job-search-hint'});
  const seatSelect = h('select', {id: 'seat-filter'});
  const seatCancel = h('button', {type: 'button', id: 'seat-cancel', class: 'danger', hidden: true});
  const clearFilter = h('button', {type: 'button', id: 'filter-clear', hidden: true}, 'Show everything');
  const hitLine = h('p', {id: 'search-hit', class: 'search-hit', hidden: true, role: 'status'});
  const findBar = h('div', {class: 'findbar', role: 'search'},
    h('label', {for: 'job-search'}, 'Find'), search,
    h('label', {for: 'seat-filter'}, 'Seat'), seatSelect, clearFilter, seatCancel,
    h('span', {class: 'hint', id: 'job-search-hint'}, 'Job number, seat, name, instance or status'));
  search.addEventListener('input', debounce(applySearch, 150, 600));
  search.addEventListener('keydown', (e) => { if (e.key === 'Escape' && search.value) { search.value = ''; applySearch(); } });
  seatSelect.addEventListener('change', () => setSeat(seatSelect.value));
  clearFilter.addEventListener('click', () => { search.value = ''; seatSelect.value = ''; setSeat(''); applySearch(); search.focus(); });
  seatCancel.addEventListener('click', () => bulkCancel({user_id: filter.user}, ctx.participant(filter.user)));

  // ---- running ----
  const runningCount = h('span', {class: 'count'});
  const runningList = h('div', {id: 'running-list', class: 'cards', 'aria-live': 'off'});
  const runningEmpty = h('p', {class: 'empty'}, 'Nothing is running.');

  // ---- pending ----
  const pendingCount = h('span', {class: 'count'});
  const pendingList = h('ol', {id: 'pending-list', class: 'jobs'});
  const pendingEmpty = h('p', {class: 'empty', id: 'pending-empty'}, 'No job is waiting.');
  const pendingNote = h('p', {class: 'note', id: 'pending-note', hidden: true});
  const clearPending = h('button', {type: 'button', id: 'clear-pending', class: 'danger small'}, 'Clear pending…');
  clearPending.addEventListener('click', () => bulkCancel({status: 'pending'}, ''));
  const dropTargets = [
    h('div', {class: 'drop', id: 'drop-top', dataset: {drop: 'top'}}, '⇡ Top of the queue'),
    ...PRIORITIES.map((p) => h('div', {class: 'drop', id: `drop-p${p.value}`, dataset: {drop: 'priority', priority: p.value}},
      `${p.name} (${p.value})`)),
  ];
  const dropBar = h('div', {class: 'dropbar', id: 'dropbar'},
    h('span', {class: 'hint'}, 'Drag a job onto:'), dropTargets);
  for (const t of dropTargets) {
    t.addEventListener('dragover', (e) => { if (dragId) { e.preventDefault(); e.dataTransfer.dropEffect = 'move'; t.classList.add('over'); } });
    t.addEventListener('dragleave', () => t.classList.remove('over'));
    t.addEventListener('drop', (e) => {
      e.preventDefault();
      t.classList.remove('over');
      const id = dragId || e.dataTransfer.getData('text/plain');
      endDrag();
      const job = pending.find((j) => j.id === id);
      if (!job) return;
      if (t.dataset.drop === 'top') moveTop(job);
      else setPriority(job, Number(t.dataset.priority));
    });
  }

  // ---- recent ----
  const recentTitle = h('span', null, 'Recently finished');
  const recentList = h('ol', {id: 'recent-list', class: 'jobs recent'});
  const recentEmpty = h('p', {class: 'empty'}, 'No job has finished yet.');

  const el = h('section', null,
    h('div', {class: 'toolbar'}, pauseBtn, modeField),
    findBar, hitLine,
    h('section', {class: 'block', 'aria-labelledby': 'h-running'},
      h('h2', {id: 'h-running'}, 'Running and prefetched ', runningCount), runningEmpty, runningList),
    h('section', {class: 'block', 'aria-labelledby': 'h-pending'},
      h('div', {class: 'block-head'}, h('h2', {id: 'h-pending'}, 'Pending ', pendingCount), clearPending),
      dropBar,
      h('div', {class: 'jobs-head', 'aria-hidden': 'true'},
        h('span', null, ''), h('span', null, 'Pos.'), h('span', null, 'Job'), h('span', null, 'Participant'),
        h('span', null, 'Priority'), h('span', null, 'Waiting'), h('span', null, 'Starts'), h('span', null, '')),
      pendingEmpty, pendingList, pendingNote),
    h('details', {class: 'block', id: 'recent', open: true},
      h('summary', null, h('h2', null, recentTitle)), recentEmpty, recentList));

  // ---- actions ----

  // Cancel waits undoMs with an Undo before it is sent; Undo keeps the job.
  function askCancel(job, where) {
    if (deferred.has(job.id) || tombs.has(job.id)) return;
    const ms = undoMs();
    deferred.set(job.id, {job, where, due: Date.now() + ms, timer: setTimeout(() => sendCancel(job.id), ms)});
    tick.start();
    mark(where);
    focusSoon(job.id, where, '.undo');
  }

  function undo(id) {
    const d = deferred.get(id);
    if (!d || d.sending) return;
    clearTimeout(d.timer);
    deferred.delete(id);
    mark(d.where);
    ctx.toast(`Job #${d.job.number} stays ${d.where === 'running' ? 'running' : 'in the queue'}`, 'ok');
    focusSoon(id, d.where, '.cancel');
  }

  async function sendCancel(id) {
    const d = deferred.get(id);
    if (!d || d.sending) return;
    clearTimeout(d.timer);
    d.sending = true;
    // Decided now, while the row is surely on show: it keeps its place
    // through the request and the event that follows, until the list is let go.
    if (held(d.where)) tombs.set(id, {job: d.job, where: d.where, index: d.index ?? 0, sending: true});
    paintCountdown();
    const ok = await ctx.act(`Cancel job #${d.job.number}`, async () => {
      await api.del(`/api/jobs/${seg(id)}`);
      return true;
    });
    deferred.delete(id);
    const t = tombs.get(id);
    if (t) t.sending = false;
    if (ok) touched.set(id, {status: 'cancelled', at: performance.now()});
    else tombs.delete(id);
    mark(d.where);
  }

  // A page closed during an Undo still cancels what it said it would.
  window.addEventListener('pagehide', () => {
    savePreviews.flush();
    for (const [id, d] of deferred) {
      if (!d.sending) api.request('DELETE', `/api/jobs/${seg(id)}`, undefined, {keepalive: true}).catch(() => {});
    }
    deferred.clear();
  });

  const tick = {
    timer: 0,
    start() { if (!this.timer) this.timer = setInterval(() => { paintCountdown(); if (!deferred.size) { clearInterval(this.timer); this.timer = 0; } }, 250); },
  };

  // The Undo button counts down; the row says what is coming, briefly.
  const secondsLeft = (d) => Math.max(0, Math.ceil((d.due - Date.now()) / 1000));
  const undoLabel = (d) => (d.sending ? 'Undo' : `Undo · ${secondsLeft(d)} s`);
  const countdown = (d) => (d.sending ? 'cancelling…' : `cancels in ${secondsLeft(d)} s`);

  function paintCountdown() {
    for (const [id, d] of deferred) {
      const el = (d.where === 'running' ? runningList : pendingList).__keyed?.get(id);
      if (!el) continue;
      if (d.where === 'running') setText(el.stage, `Cancelling: ${countdown(d)}`);
      else setText(el.eta, d.sending ? 'cancelling' : 'cancels');
      setText(el.undo, undoLabel(d));
      el.undo.disabled = !!d.sending;
    }
  }

  // Where the rows of cancels and tombstones are on show, to put a
  // tombstone back at the same place once its job has left the list.
  function keepPlaces(where) {
    const list = where === 'running' ? runningList : pendingList;
    const at = new Map();
    let i = 0;
    for (const c of list.children) if (c.job) at.set(c.job.id, i++);
    for (const m of [deferred, tombs]) {
      for (const [id, x] of m) if (x.where === where && at.has(id)) x.index = at.get(id);
    }
  }

  function focusSoon(id, where, sel) {
    requestAnimationFrame(() => requestAnimationFrame(() => {
      const el = (where === 'running' ? runningList : pendingList).__keyed?.get(id);
      const b = el && el.querySelector(sel);
      if (b && !b.hidden) b.focus({preventScroll: true}); // where the pointer just was: nothing may move
    }));
  }

  // A list is held while the pointer is on it or focus is in it.
  function held(where) {
    const list = where === 'running' ? runningList : pendingList;
    return list.matches(':hover') || list.contains(document.activeElement);
  }
  for (const [where, list] of [['pending', pendingList], ['running', runningList]]) {
    const leave = () => {
      if (held(where)) return;
      let any = false;
      for (const [id, t] of tombs) if (t.where === where) { tombs.delete(id); any = true; }
      if (any) mark(where);
    };
    list.addEventListener('pointerleave', () => setTimeout(leave, 0));
    list.addEventListener('focusout', () => setTimeout(leave, 0));
  }

  function moveTop(job, button) {
    return ctx.act(`Move job #${job.number} to the top`, async () => {
      await api.post(`/api/jobs/${seg(job.id)}/move`, {to: 'top'});
      await loadPending();
    }, {button});
  }

  function setPriority(job, priority) {
    if (job.priority === priority) return;
    return ctx.act(`Change the priority of job #${job.number}`, async () => {
      await api.patch(`/api/jobs/${seg(job.id)}/priority`, {priority});
      await loadPending();
    });
  }

  function retry(job, button) {
    return ctx.act(`Retry job #${job.number}`, async () => api.post(`/api/jobs/${seg(job.id)}/retry`),
      {button, ok: (j) => (j && j.number ? `Job #${job.number} queued again as #${j.number}` : 'Queued again')});
  }

  // Many at once: ask the server what it would cancel, say it with numbers,
  // then cancel exactly those.
  async function bulkCancel(sel, whose) {
    const what = whose ? `everything of ${whose}` : 'every pending job';
    const dry = await ctx.act(`Cancel ${what}`, () => api.post('/api/queue/cancel', {...sel, dry_run: true}));
    if (!dry) return;
    if (!dry.count) { ctx.toast(whose ? `${whose} has no pending or running job.` : 'No job is waiting.', 'info'); return; }
    const n = (k, word) => `${k} ${word}${k === 1 ? '' : 's'}`;
    const lines = whose
      ? [`${n(dry.counts.pending || 0, 'pending job')} and ${n(dry.counts.running || 0, 'running job')} of ${whose}.`,
        dry.counts.running ? 'Running jobs stop on their GPU now.' : '']
      : [`${n(dry.count, 'pending job')} of ${n(new Set(dry.jobs.map((j) => j.user_id)).size, 'participant')}. Running jobs go on.`];
    lines.push('Participants see them as cancelled. This cannot be undone; Retry queues a job again as a new one.');
    const ok = await confirmAction({
      title: whose ? `Cancel everything of ${whose}?` : 'Clear the pending queue?',
      text: lines.filter(Boolean), ok: `Cancel ${n(dry.count, 'job')}`, cancel: 'Keep them',
    });
    if (!ok) return;
    await ctx.act(`Cancel ${what}`, async () => {
      const r = await api.post('/api/queue/cancel', {...sel, ids: dry.jobs.map((j) => j.id)});
      for (const j of r.jobs) markGone(j.id, 'cancelled');
      return r;
    }, {ok: (r) => `Cancelled ${n(r.count, 'job')}${whose ? ` of ${whose}` : ''}`});
  }

  // A job we cancelled disappears at once; the event confirms it.
  function markGone(id, status) {
    const el = pendingList.__keyed?.get(id) || runningList.__keyed?.get(id);
    if (el) el.classList.add('gone');
    touched.set(id, {status, at: performance.now()});
  }

  // ---- drag and drop ----
  function endDrag() {
    dragId = '';
    el.classList.remove('dragging');
    for (const r of pendingList.querySelectorAll('.drag-src, .over')) r.classList.remove('drag-src', 'over');
    for (const t of dropTargets) t.classList.remove('over');
  }

  // ---- search ----
  function applySearch() {
    const text = search.value.trim().toLowerCase();
    const words = text ? text.split(/\s+/) : [];
    filter.tokens = words;
    hit = null;
    renderFilterBar();
    mark('pending', 'running', 'recent');
    findByNumber();
  }

  function setSeat(userId) {
    filter.user = userId || '';
    seatPending = seatHistory = null;
    renderFilterBar();
    mark('pending', 'running', 'recent');
    if (filter.user) loadSeat();
  }

  async function loadSeat() {
    const user = filter.user;
    if (!user) return;
    const [p, all] = await Promise.all([
      api.get(`/api/jobs?status=pending&user_id=${encodeURIComponent(user)}&limit=${PENDING_LIMIT}`),
      api.get(`/api/jobs?user_id=${encodeURIComponent(user)}&limit=${RECENT_LIMIT}`),
    ]);
    if (filter.user !== user) return;
    seatPending = (p && p.jobs) || [];
    seatHistory = ((all && all.jobs) || []).filter((j) => FINISHED.has(j.status));
    mark('pending', 'recent');
  }
  const refetchSeat = debounce(() => loadSeat().catch(() => {}), 400, 2000);

  function tokenMatches(job, t) {
    let m;
    if ((m = /^#(\d+)$/.exec(t))) return job.number === Number(m[1]);
    if (/^\d+$/.test(t)) return job.number === Number(t) || seatOf(job.user_id) === Number(t);
    const status = STATUS_WORDS[t];
    if (status) return job.status === status;
    return ctx.participant(job.user_id).toLowerCase().includes(t) || instanceOf(job).toLowerCase().includes(t);
  }

  function matches(job) {
    if (filter.user && job.user_id !== filter.user) return false;
    for (const t of filter.tokens) if (!tokenMatches(job, t)) return false;
    return true;
  }
  const filtering = () => filter.user !== '' || filter.tokens.length > 0;

  // "#42" that no list shows is asked of the server.
  const findByNumber = debounce(async () => {
    const m = filter.tokens.length === 1 && /^#?(\d+)$/.exec(filter.tokens[0]);
    if (!m) return;
    const n = Number(m[1]);
    const shown = [...pending, ...running.values(), ...recent, ...(seatHistory || [])].some((j) => j.number === n);
    if (shown) return;
    try {
      const r = await api.get(`/api/jobs?number=${n}`);
      if (search.value.trim().replace(/^#/, '') !== String(n)) return;
      hit = (r && r.jobs && r.jobs[0]) || {number: n, missing: true};
      renderHit();
    } catch { /* the lists still show what they have */ }
  }, 250, 1000);

  function renderHit() {
    hitLine.hidden = !hit;
    if (!hit) return;
    if (hit.missing) { hitLine.replaceChildren(`No job #${hit.number} in this workshop.`); return; }
    hitLine.replaceChildren(`Job #${hit.number} · ${ctx.participant(hit.user_id)} · ${hit.status}`,
      hit.worker ? ` · ${hit.worker}` : '', ' ',
      h('button', {type: 'button', class: 'small', id: 'search-hit-open', onclick: () => ctx.openJob(hit.id)}, 'Open'));
  }

  function renderFilterBar() {
    clearFilter.hidden = !filtering();
    seatCancel.hidden = !filter.user;
    if (filter.user) setText(seatCancel, `Cancel everything of ${ctx.participant(filter.user)}…`);
    renderHit();
  }

  let seatsKey = '';
  function renderSeatOptions() {
    const seats = [...ctx.state.seats].sort((a, b) => a.seat - b.seat);
    const key = seats.map((s) => `${s.seat}:${s.name}`).join('\n');
    if (key === seatsKey) return;
    seatsKey = key;
    const keep = seatSelect.value || filter.user;
    seatSelect.replaceChildren(h('option', {value: ''}, 'All seats'),
      ...seats.map((s) => h('option', {value: s.user_id}, s.name ? `${s.seat} · ${s.name}` : `Seat ${s.seat}`)));
    seatSelect.value = keep;
  }

  // ---- pending rows ----
  function createRow(item) {
    if (item.head) {
      const li = h('li', {class: 'group-head', dataset: {priority: item.priority}});
      li.label = h('span', null);
      li.append(li.label);
      return li;
    }
    // Rows are clones of one template (cheap for 500); their events are
    // handled once on the list (below).
    const li = rowTemplate.cloneNode(true);
    [li.grip, li.pos, li.num, li.who, li.prio, li.age, li.eta] = li.children;
    [li.top, li.cancel, li.undo] = li.children[7].children;
    return li;
  }

  const rowTemplate = h('li', {class: 'job-row', draggable: 'true'},
    h('span', {class: 'grip', 'aria-hidden': 'true', title: 'Drag to another priority or to the top'}, '⠿'),
    h('span', {class: 'pos'}),
    h('button', {type: 'button', class: 'num link'}),
    h('span', {class: 'who'}),
    h('select', {class: 'prio'}, PRIORITIES.map((p) => h('option', {value: String(p.value)}, `${p.value} · ${p.name}`))),
    h('span', {class: 'age'}),
    h('span', {class: 'eta'}),
    h('span', {class: 'actions'},
      h('button', {type: 'button', class: 'top'}, 'Top'),
      h('button', {type: 'button', class: 'cancel danger'}, 'Cancel'),
      h('button', {type: 'button', class: 'undo primary', hidden: true}, 'Undo')));

  const rowOf = (e) => {
    const li = e.target.closest && e.target.closest('li.job-row');
    return li && li.job ? li : null;
  };
  pendingList.addEventListener('click', (e) => {
    const li = rowOf(e);
    if (!li) return;
    if (e.target === li.top) moveTop(li.job, li.top);
    else if (e.target === li.cancel) askCancel(li.job, 'pending');
    else if (e.target === li.undo) undo(li.job.id);
    else if (e.target === li.num) ctx.openJob(li.job.id);
  });
  pendingList.addEventListener('change', (e) => {
    const li = rowOf(e);
    if (li && e.target === li.prio) setPriority(li.job, Number(li.prio.value));
  });
  pendingList.addEventListener('dragstart', (e) => {
    const li = rowOf(e);
    if (!li || li.dataset.state) { e.preventDefault(); return; }
    dragId = li.job.id;
    e.dataTransfer.setData('text/plain', li.job.id);
    e.dataTransfer.effectAllowed = 'move';
    li.classList.add('drag-src');
    el.classList.add('dragging');
  });
  pendingList.addEventListener('dragend', endDrag);
  // Dropping onto a row of another priority takes that priority.
  pendingList.addEventListener('dragover', (e) => {
    const li = rowOf(e);
    if (li && dragId && dragId !== li.job.id && li.job.priority !== (pending.find((j) => j.id === dragId) || {}).priority) {
      e.preventDefault();
      li.classList.add('over');
    }
  });
  pendingList.addEventListener('dragleave', (e) => { const li = rowOf(e); if (li) li.classList.remove('over'); });
  pendingList.addEventListener('drop', (e) => {
    const li = rowOf(e);
    if (!li) return;
    e.preventDefault();
    const id = dragId || e.dataTransfer.getData('text/plain');
    const target = li.job.priority;
    endDrag();
    const job = pending.find((j) => j.id === id);
    if (job) setPriority(job, target);
  });

  function updateRow(li, item) {
    if (item.head) {
      setText(li.label, `${prioName(item.priority)} priority (${item.priority}) · ${item.n}`);
      return;
    }
    const job = item.job;
    li.job = job;
    setAttr(li, 'data-id', job.id);
    setAttr(li, 'data-priority', job.priority);
    setText(li.pos, item.pos || '');
    setText(li.num, `#${job.number}`);
    setAttr(li.num, 'aria-label', `Open job #${job.number}`);
    setText(li.who, ctx.participant(job.user_id));
    if (document.activeElement !== li.prio) li.prio.value = String(job.priority);
    setAttr(li.prio, 'aria-label', `Priority of job #${job.number}`);
    setAttr(li.top, 'aria-label', `Move job #${job.number} to the top`);
    setAttr(li.cancel, 'aria-label', `Cancel job #${job.number}`);
    setAttr(li.undo, 'aria-label', `Undo: keep job #${job.number}`);
    setText(li.age, fmtAge(job.created_at));
    const d = deferred.get(job.id);
    const tomb = tombs.get(job.id);
    const state = tomb && !tomb.sending ? 'cancelled' : d ? 'undo' : '';
    setAttr(li, 'data-state', state || null);
    setAttr(li, 'draggable', state ? 'false' : 'true');
    li.top.hidden = li.cancel.hidden = !!state;
    li.undo.hidden = state !== 'undo';
    li.prio.disabled = !!state;
    setText(li.eta, state === 'cancelled' ? 'cancelled' : d ? (d.sending ? 'cancelling' : 'cancels') : fmtEta(job.eta_seconds, ctx.state.status.paused));
    if (d) setText(li.undo, undoLabel(d));
    li.classList.toggle('gone', !state && touched.has(job.id) && touched.get(job.id).status !== 'pending');
  }

  // The rows on show: the pending jobs (the filtered seat's from the
  // server), those that match, and the tombstones back at their places.
  function shownPending() {
    const source = filter.user && seatPending ? seatPending : pending;
    // Positions: the local order's for the room, the server's for one seat.
    const list = source.map((job, i) => ({job, pos: source === pending ? i + 1 : job.position})).filter((it) => matches(it.job));
    for (const [id, t] of tombs) {
      if (t.where !== 'pending' || list.some((it) => it.job.id === id)) continue;
      list.splice(Math.min(t.index, list.length), 0, {job: t.job, pos: 0});
    }
    return list;
  }

  function renderPending() {
    const t0 = performance.now();
    const items = [];
    let run = null;
    const shown = shownPending();
    for (const it of shown) {
      const job = it.job;
      if (!run || run.priority !== job.priority) {
        run = {head: true, priority: job.priority, key: `h${items.length}:${job.priority}`, n: 0};
        items.push(run);
      }
      run.n++;
      items.push({job, pos: it.pos, key: job.id});
    }
    reconcile(pendingList, items, (it) => it.key, createRow, updateRow);
    keepPlaces('pending');
    pendingEmpty.hidden = shown.length > 0;
    setText(pendingEmpty, filtering() ? 'No waiting job matches.' : 'No job is waiting.');
    const total = ctx.state.status.counts.pending ?? pending.length;
    setText(pendingCount, filtering() ? `${shown.length - [...tombs.values()].filter((t) => t.where === 'pending').length} of ${total}` : total);
    pendingNote.hidden = filtering() || total <= pending.length;
    setText(pendingNote, `Showing the first ${pending.length} of ${total} pending jobs. Pick a seat to see all of theirs.`);
    clearPending.disabled = total === 0;
    void pendingList.offsetHeight; // include layout in the measurement
    stats.renders.pending = performance.now() - t0;
    stats.renders.pendingRows = items.length - items.filter((i) => i.head).length;
  }

  // ---- running cards ----
  function stageOf(job) {
    const p = progress.get(job.id);
    if (p && p.stage) return p.stage;
    return job.started_at ? 'executing' : 'queued';
  }

  function createCard() {
    const c = h('article', {class: 'run-card'});
    c.preview = h('img', {class: 'preview', alt: '', hidden: true, decoding: 'async'});
    c.ph = h('div', {class: 'preview ph'});
    c.who = h('strong', {class: 'who'});
    c.num = h('button', {type: 'button', class: 'num link'});
    c.num.addEventListener('click', () => ctx.openJob(c.job.id));
    c.stage = h('span', {class: 'stage'});
    c.worker = h('span', {class: 'worker'});
    c.fill = h('div', {class: 'fill'});
    c.bar = h('div', {class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100'}, c.fill);
    c.node = h('span', {class: 'node'});
    c.elapsed = h('span', {class: 'elapsed'});
    c.cancel = h('button', {type: 'button', class: 'cancel danger small'}, 'Cancel');
    c.cancel.addEventListener('click', () => askCancel(c.job, 'running'));
    c.undo = h('button', {type: 'button', class: 'undo primary small', hidden: true}, 'Undo');
    c.undo.addEventListener('click', () => undo(c.job.id));
    c.append(c.preview, c.ph,
      h('div', {class: 'meta'},
        h('div', {class: 'line1'}, c.who, c.num, c.cancel, c.undo),
        h('div', {class: 'line2'}, c.stage, ' ', c.worker),
        c.bar,
        h('div', {class: 'line3'}, c.node, c.elapsed)));
    return c;
  }

  function updateCard(c, job) {
    c.job = job;
    setAttr(c, 'data-id', job.id);
    setText(c.who, ctx.participant(job.user_id));
    setText(c.num, job.number === '?' ? '' : `#${job.number}`);
    setAttr(c.num, 'aria-label', `Open job #${job.number}`);
    setAttr(c.cancel, 'aria-label', `Cancel job #${job.number}`);
    setAttr(c.undo, 'aria-label', `Undo: keep job #${job.number} running`);
    const p = progress.get(job.id);
    setText(c.worker, (p && p.worker) || job.worker || '');
    updateProgress(c, job, p);
    setText(c.elapsed, job.started_at ? fmtAge(job.started_at) : '');
    c.classList.toggle('gone', !tombs.has(job.id) && touched.has(job.id) && touched.get(job.id).status !== 'running');
  }

  const STAGE_TEXT = {queued: 'Prefetched, waiting on', collecting: 'Collecting outputs from', executing: 'Running on'};
  const PH_TEXT = {queued: 'Waiting', collecting: 'Saving', executing: 'No preview yet'};

  function updateProgress(c, job, p) {
    const stage = stageOf(job);
    const d = deferred.get(job.id);
    const tomb = tombs.get(job.id);
    const state = tomb && !tomb.sending ? 'cancelled' : d ? 'undo' : '';
    setAttr(c, 'data-stage', stage);
    setAttr(c, 'data-state', state || null);
    c.cancel.hidden = !!state;
    c.undo.hidden = state !== 'undo';
    if (d) setText(c.undo, undoLabel(d));
    setText(c.stage, state === 'cancelled' ? 'Cancelled, was on' : d ? `Cancelling: ${countdown(d)}` : STAGE_TEXT[stage] || 'Running on');
    let pct = 0;
    if (stage === 'collecting') pct = 100;
    else if (p && p.max > 0) pct = Math.max(0, Math.min(100, Math.round((p.value / p.max) * 100)));
    const w = `${pct}%`;
    if (c.fill.style.width !== w) c.fill.style.width = w;
    setAttr(c.bar, 'aria-valuenow', pct);
    setAttr(c.bar, 'aria-label', `Progress of job #${job.number}`);
    setAttr(c.bar, 'aria-valuetext', p && p.max > 0 ? `${p.value} of ${p.max}` : stage);
    setText(c.node, stage === 'executing' && p && p.node ? `Node ${p.node}${p.max > 0 ? ` · step ${p.value}/${p.max}` : ''}` : '');
    const src = previews.get(job.id) || '';
    if (src && c.preview.getAttribute('src') !== src) {
      c.preview.src = src;
      c.preview.alt = `Latest preview of job #${job.number}`;
    }
    c.preview.hidden = !c.preview.getAttribute('src');
    c.ph.hidden = !c.preview.hidden;
    setText(c.ph, PH_TEXT[stage] || '');
  }

  function runningOrder() {
    const rank = {executing: 0, collecting: 0, queued: 1};
    return [...running.values()].sort((a, b) =>
      (rank[stageOf(a)] ?? 0) - (rank[stageOf(b)] ?? 0) ||
      String(a.worker || '').localeCompare(String(b.worker || '')) || a.number - b.number);
  }

  function renderRunning() {
    const t0 = performance.now();
    const all = runningOrder();
    const jobs = all.filter(matches);
    for (const [id, t] of tombs) {
      if (t.where === 'running' && !jobs.some((j) => j.id === id)) jobs.splice(Math.min(t.index, jobs.length), 0, t.job);
    }
    reconcile(runningList, jobs, (j) => j.id, createCard, updateCard);
    keepPlaces('running');
    runningEmpty.hidden = jobs.length > 0;
    setText(runningEmpty, filtering() ? 'No running job matches.' : 'Nothing is running.');
    setText(runningCount, filtering() ? `${jobs.length} of ${all.length}` : all.length);
    stats.renders.running = performance.now() - t0;
  }

  function renderProgress() {
    for (const id of progressDirty) {
      const c = runningList.__keyed && runningList.__keyed.get(id);
      const job = running.get(id);
      if (c && job) updateProgress(c, job, progress.get(id));
    }
    progressDirty.clear();
    stats.progressFrames = (stats.progressFrames || 0) + 1;
  }

  // Previews outlive a reload of the page (not of the browser tab).
  const savePreviews = debounce(() => {
    try {
      const keep = {};
      for (const [id, src] of previews) if (running.has(id)) keep[id] = src;
      sessionStorage.setItem(PREVIEW_KEY, JSON.stringify(keep));
    } catch { /* storage full or off: previews come back with the next one */ }
  }, 1000, 5000);

  function restorePreviews() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(PREVIEW_KEY) || '{}');
      for (const [id, src] of Object.entries(saved)) if (running.has(id) && !previews.has(id)) previews.set(id, src);
    } catch { /* nothing saved */ }
  }

  // ---- recent ----
  function createRecent() {
    const li = h('li', {class: 'recent-row'});
    li.num = h('button', {type: 'button', class: 'num link'});
    li.num.addEventListener('click', () => ctx.openJob(li.job.id));
    li.who = h('span', {class: 'who'});
    li.status = h('span', {class: 'status'});
    li.time = h('span', {class: 'time'});
    li.detail = h('div', {class: 'detail'});
    li.retry = h('button', {type: 'button', class: 'retry'}, 'Retry');
    li.retry.addEventListener('click', () => retry(li.job, li.retry));
    li.append(li.num, li.who, li.status, li.time, li.detail, h('span', {class: 'actions'}, li.retry));
    return li;
  }

  function updateRecent(li, job) {
    li.job = job;
    setAttr(li, 'data-id', job.id);
    setText(li.num, `#${job.number}`);
    setAttr(li.num, 'aria-label', `Open job #${job.number}`);
    setText(li.who, ctx.participant(job.user_id));
    setText(li.status, job.status);
    setAttr(li.status, 'data-status', job.status);
    const run = job.started_at && job.completed_at ? (Date.parse(job.completed_at) - Date.parse(job.started_at)) / 1000 : null;
    setText(li.time, run != null ? `ran ${fmtDuration(run)}` : fmtAge(job.completed_at || job.created_at) + ' ago');
    // A failure says where it happened and, opened, the whole error.
    const key = `${job.status}\u0000${job.worker || ''}\u0000${errorSummary(job)}\u0000${job.result ? job.result.outputs.length : ''}`;
    if (li.detailKey !== key) {
      li.detailKey = key;
      if (job.status === 'failed' && job.error) {
        const tries = `after ${job.attempts} attempt${job.attempts === 1 ? '' : 's'}`;
        const where = !job.worker ? tries : job.attempts > 1 ? `on ${job.worker} ${tries}` : `on ${job.worker}`;
        li.detail.replaceChildren(h('details', {class: 'err'},
          h('summary', {title: errorSummary(job)}, h('strong', {class: 'where'}, where), ' · ', errorSummary(job)),
          errorBody(job)));
      } else {
        const text = job.status === 'completed' && job.result && job.result.outputs
          ? `${job.result.outputs.length} output${job.result.outputs.length === 1 ? '' : 's'}${job.worker ? ' · ' + job.worker : ''}`
          : [job.error && job.error.message, job.worker].filter(Boolean).join(' · ');
        li.detail.replaceChildren(h('span', {class: 'line', title: text}, text));
      }
    }
    li.retry.hidden = job.status !== 'failed' && job.status !== 'cancelled';
    setAttr(li.retry, 'aria-label', `Retry job #${job.number}`);
  }

  function renderRecent() {
    const source = filter.user && seatHistory ? mergeNewest(seatHistory, recent.filter((j) => j.user_id === filter.user)) : recent;
    const list = source.filter(matches);
    reconcile(recentList, list, (j) => j.id, createRecent, updateRecent);
    recentEmpty.hidden = list.length > 0;
    setText(recentEmpty, filtering() ? 'No finished job matches.' : 'No job has finished yet.');
    setText(recentTitle, filter.user ? `Finished jobs of ${ctx.participant(filter.user)}` : 'Recently finished');
  }

  // Finished jobs of two lists, newest first, each once.
  function mergeNewest(a, b) {
    const byId = new Map();
    for (const j of [...b, ...a]) if (!byId.has(j.id)) byId.set(j.id, j);
    return [...byId.values()].sort((x, y) => y.number - x.number);
  }

  // ---- render scheduling ----
  const renderSoon = perFrame(() => {
    if (dirty.pending) { dirty.pending = false; renderPending(); }
    if (dirty.running) { dirty.running = false; renderRunning(); progressDirty.clear(); }
    if (dirty.recent) { dirty.recent = false; renderRecent(); }
    if (progressDirty.size) renderProgress();
  });
  const mark = (...what) => { for (const w of what) dirty[w] = true; renderSoon(); };

  function renderControls() {
    const st = ctx.state.status;
    setText(pauseBtn, st.paused ? 'Resume queue' : 'Pause queue');
    setAttr(pauseBtn, 'aria-pressed', st.paused ? 'true' : 'false');
    pauseBtn.classList.toggle('paused', st.paused);
    for (const [mode, input] of Object.entries(modeInputs)) input.checked = st.mode === mode;
  }

  // ---- loading ----
  async function loadPending() {
    const started = performance.now();
    const r = await api.get(`/api/jobs?status=pending&limit=${PENDING_LIMIT}`);
    applyPending((r && r.jobs) || [], started);
  }
  const refetchPending = debounce(() => loadPending().catch(() => {}), 700, 2500);

  function applyPending(jobs, fetchStarted) {
    // Changes we made or heard of after the request left win over its answer.
    const fresh = (id) => { const t = touched.get(id); return t && t.at > fetchStarted ? t : null; };
    const list = jobs.filter((j) => { const t = fresh(j.id); return !t || t.status === 'pending'; });
    const ids = new Set(list.map((j) => j.id));
    for (const j of pending) {
      const t = fresh(j.id);
      if (t && t.status === 'pending' && !ids.has(j.id)) list.splice(insertAt(list, j), 0, j);
    }
    pending = list;
    for (const j of pending) known.set(j.id, 'pending');
    const now = performance.now();
    for (const [id, t] of touched) if (now - t.at > 60000) touched.delete(id);
    dirty.pending = false;
    renderPending();
  }

  function insertAt(list, job) {
    let i = list.length;
    while (i > 0 && list[i - 1].priority > job.priority) i--;
    return i;
  }

  async function load() {
    const started = performance.now();
    const [p, r, all] = await Promise.all([
      api.get(`/api/jobs?status=pending&limit=${PENDING_LIMIT}`),
      api.get(`/api/jobs?status=running&limit=${PENDING_LIMIT}`),
      api.get(`/api/jobs?limit=${RECENT_LIMIT}`),
    ]);
    known.clear();
    running.clear();
    for (const j of (r && r.jobs) || []) { running.set(j.id, j); known.set(j.id, 'running'); }
    for (const id of [...progress.keys()]) if (!running.has(id)) progress.delete(id);
    for (const id of [...previews.keys()]) if (!running.has(id)) previews.delete(id);
    restorePreviews();
    recent = ((all && all.jobs) || []).filter((j) => FINISHED.has(j.status)).slice(0, RECENT_LIMIT);
    applyPending((p && p.jobs) || [], started);
    renderSeatOptions();
    renderRunning();
    renderRecent();
    renderControls();
    if (filter.user) refetchSeat();
  }

  // ---- events ----
  function upsert(job, created) {
    const prev = known.get(job.id) ?? (created ? null : 'pending');
    const next = job.status;
    if (filter.user && job.user_id === filter.user) refetchSeat();
    if (prev && FINISHED.has(prev)) return; // finished is final
    touched.set(job.id, {status: next, at: performance.now()});
    if (prev !== next) ctx.adjustCount(prev, next);
    const d = deferred.get(job.id);
    if (d && !FINISHED.has(next)) d.where = next === 'running' ? 'running' : 'pending'; // dispatched during its Undo
    const i = pending.findIndex((j) => j.id === job.id);
    if (i >= 0) { pending.splice(i, 1); dirty.pending = true; }
    if (next !== 'running' && running.delete(job.id)) dirty.running = true;
    if (next === 'pending') {
      known.set(job.id, 'pending');
      pending.splice(insertAt(pending, job), 0, job);
      dirty.pending = true;
    } else if (next === 'running') {
      known.set(job.id, 'running');
      running.set(job.id, {...(running.get(job.id) || {}), ...job});
      dirty.running = true;
    } else if (FINISHED.has(next)) {
      known.delete(job.id);
      progress.delete(job.id);
      previews.delete(job.id);
      if (deferred.has(job.id)) { clearTimeout(deferred.get(job.id).timer); deferred.delete(job.id); }
      if (tombs.has(job.id)) tombs.get(job.id).job = job;
      recent = [job, ...recent.filter((j) => j.id !== job.id)].slice(0, RECENT_LIMIT);
      dirty.recent = true;
      ctx.emit('job_finished', job);
    }
    renderSoon();
    refetchPending();
  }

  function onProgress(p) {
    if (!p.job_id) return;
    progress.set(p.job_id, p);
    if (p.preview) {
      const src = safeUrl(p.preview, {data: true});
      if (src) { previews.set(p.job_id, src); savePreviews(); }
    }
    if (!running.has(p.job_id)) {
      // A job we have not heard start: show it from what the progress says.
      running.set(p.job_id, {id: p.job_id, user_id: p.user_id, worker: p.worker, number: '?', status: 'running'});
      known.set(p.job_id, 'running');
      dirty.running = true;
      refetchRunning();
    } else {
      const job = running.get(p.job_id);
      const before = job.__stage;
      job.__stage = p.stage;
      if ((before === 'queued') !== (p.stage === 'queued')) dirty.running = true; // order changes
    }
    progressDirty.add(p.job_id);
    renderSoon();
  }

  const refetchRunning = debounce(async () => {
    try {
      const r = await api.get(`/api/jobs?status=running&limit=${PENDING_LIMIT}`);
      for (const j of (r && r.jobs) || []) {
        const t = touched.get(j.id);
        if (t && t.status !== 'running') continue;
        running.set(j.id, {...(running.get(j.id) || {}), ...j});
        known.set(j.id, 'running');
      }
      mark('running');
    } catch { /* the next event tries again */ }
  }, 300, 1500);

  // Ages and waits tick while the view is on screen.
  setInterval(() => {
    if (!ctx.isActive('queue') || document.hidden) return;
    const now = Date.now();
    for (const li of pendingList.children) if (li.job) setText(li.age, fmtAge(li.job.created_at, now));
    for (const c of runningList.children) if (c.job && c.job.started_at) setText(c.elapsed, fmtAge(c.job.started_at, now));
  }, 5000);

  ctx.jobById = (id) => running.get(id) || pending.find((j) => j.id === id);

  ctx.on('status', () => { renderControls(); mark('pending'); });
  ctx.on('seats', () => { renderSeatOptions(); if (view.loaded) mark('pending', 'running', 'recent'); });

  const view = {
    id: 'queue',
    title: 'Queue',
    el,
    load,
    onEvent(msg) {
      switch (msg.type) {
        case 'job_created': if (msg.job) upsert(msg.job, true); break;
        case 'job_updated': if (msg.job) upsert(msg.job, false); break;
        case 'job_progress': if (msg.progress) onProgress(msg.progress); break;
        case 'queue_changed': refetchPending(); break;
      }
    },
    // For the benchmark: fetch and render the pending list now.
    reloadPending: loadPending,
    // For the tests: send every cancel that waits for its Undo now.
    flushCancels: () => Promise.all([...deferred.keys()].map(sendCancel)),
  };
  renderControls();
  return view;
}
