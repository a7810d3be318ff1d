// Queue: running and prefetched jobs with live progress, pending jobs in
// dispatch order with actions and drag and drop, recent finished jobs.

import {h, setText, setAttr, reconcile, fmtAge, fmtEta, fmtDuration, safeUrl, debounce, perFrame} from '../dom.js';

export const PRIORITIES = [
  {value: 0, name: 'Instructor'},
  {value: 1, name: 'High'},
  {value: 2, name: 'Normal'},
  {value: 3, name: 'Low'},
];
const prioName = (p) => (PRIORITIES[p] ? PRIORITIES[p].name : `P${p}`);
const FINISHED = new Set(['completed', 'failed', 'cancelled']);
const PENDING_LIMIT = 500;
const RECENT_LIMIT = 100;

export default function queueView(ctx) {
  const {api, stats} = ctx;
  const seg = api.seg;

  let pending = [];            // dispatch order, as the server last said plus local changes
  const running = new Map();   // id -> job
  const progress = new Map();  // id -> latest progress
  let recent = [];             // finished jobs, newest first
  const known = new Map();     // id -> status, for active jobs we have seen
  const touched = new Map();   // id -> {status, at}: local changes, to merge refetches
  const dirty = {pending: false, running: false, recent: false};
  const progressDirty = new Set();
  let dragId = '';

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

  // ---- running ----
  const runningCount = h('span', {class: 'count'});
  const runningList = h('div', {id: 'running-list', class: 'cards', 'aria-live': 'off'});
  const runningEmpty = h('p', {class: 'empty'}, 'Nothing is running.');

  // ---- pending ----
  const pendingCount = h('span', {class: 'count'});
  const pendingList = h('ol', {id: 'pending-list', class: 'jobs'});
  const pendingEmpty = h('p', {class: 'empty'}, 'No job is waiting.');
  const pendingNote = h('p', {class: 'note', id: 'pending-note', hidden: true});
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
  const recentList = h('ol', {id: 'recent-list', class: 'jobs recent'});
  const recentEmpty = h('p', {class: 'empty'}, 'No job has finished yet.');

  const el = h('section', null,
    h('div', {class: 'toolbar'}, pauseBtn, modeField),
    h('section', {class: 'block', 'aria-labelledby': 'h-running'},
      h('h2', {id: 'h-running'}, 'Running and prefetched ', runningCount), runningEmpty, runningList),
    h('section', {class: 'block', 'aria-labelledby': 'h-pending'},
      h('h2', {id: 'h-pending'}, 'Pending ', pendingCount),
      dropBar,
      h('div', {class: 'jobs-head', 'aria-hidden': 'true'},
        h('span', null, ''), h('span', null, 'Pos.'), h('span', null, 'Job'), h('span', null, 'Participant'),
        h('span', null, 'Priority'), h('span', null, 'Waiting'), h('span', null, 'Starts'), h('span', null, '')),
      pendingEmpty, pendingList, pendingNote),
    h('details', {class: 'block', id: 'recent', open: true},
      h('summary', null, h('h2', null, 'Recently finished')), recentEmpty, recentList));

  // ---- actions ----
  function cancel(job, button) {
    return ctx.act(`Cancel job #${job.number}`, async () => {
      await api.del(`/api/jobs/${seg(job.id)}`);
      markGone(job.id, 'cancelled');
    }, {button});
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

  // A job we cancelled disappears at once; the event confirms it.
  function markGone(id, status) {
    const el = pendingList.querySelector(`li[data-id="${CSS.escape(id)}"]`) ||
      runningList.querySelector(`[data-id="${CSS.escape(id)}"]`);
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
    [li.top, li.cancel] = li.children[7].children;
    return li;
  }

  const rowTemplate = h('li', {class: 'job-row', draggable: 'true'},
    h('span', {class: 'grip', 'aria-hidden': 'true', title: 'Drag to another priority or to the top'}, '⠿'),
    h('span', {class: 'pos'}),
    h('span', {class: 'num'}),
    h('span', {class: 'who'}),
    h('select', {class: 'prio'}, PRIORITIES.map((p) => h('option', {value: String(p.value)}, `${p.value} · ${p.name}`))),
    h('span', {class: 'age'}),
    h('span', {class: 'eta'}),
    h('span', {class: 'actions'},
      h('button', {type: 'button', class: 'top'}, 'Top'),
      h('button', {type: 'button', class: 'cancel danger'}, 'Cancel')));

  const rowOf = (e) => {
    const li = e.target.closest && e.target.closest('li.job-row');
    return li && li.job ? li : null;
  };
  pendingList.addEventListener('click', (e) => {
    const li = rowOf(e);
    if (!li) return;
    if (e.target === li.top) moveTop(li.job, li.top);
    else if (e.target === li.cancel) cancel(li.job, li.cancel);
  });
  pendingList.addEventListener('change', (e) => {
    const li = rowOf(e);
    if (li && e.target === li.prio) setPriority(li.job, Number(li.prio.value));
  });
  pendingList.addEventListener('dragstart', (e) => {
    const li = rowOf(e);
    if (!li) return;
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
    setText(li.pos, item.pos);
    setText(li.num, `#${job.number}`);
    setText(li.who, ctx.participant(job.user_id));
    if (document.activeElement !== li.prio) li.prio.value = String(job.priority);
    setAttr(li.prio, 'aria-label', `Priority of job #${job.number}`);
    setAttr(li.top, 'aria-label', `Move job #${job.number} to the top`);
    setAttr(li.cancel, 'aria-label', `Cancel job #${job.number}`);
    setText(li.age, fmtAge(job.created_at));
    setText(li.eta, fmtEta(job.eta_seconds, ctx.state.status.paused));
    li.classList.toggle('gone', touched.has(job.id) && touched.get(job.id).status !== 'pending');
  }

  function renderPending() {
    const t0 = performance.now();
    const items = [];
    let run = null;
    pending.forEach((job, i) => {
      if (!run || run.priority !== job.priority) {
        run = {head: true, priority: job.priority, key: `h${items.length}:${job.priority}`, n: 0};
        items.push(run);
      }
      run.n++;
      items.push({job, pos: i + 1, key: job.id});
    });
    reconcile(pendingList, items, (it) => it.key, createRow, updateRow);
    pendingEmpty.hidden = pending.length > 0;
    const total = ctx.state.status.counts.pending ?? pending.length;
    setText(pendingCount, total);
    pendingNote.hidden = total <= pending.length;
    setText(pendingNote, `Showing the first ${pending.length} of ${total} pending jobs.`);
    void pendingList.offsetHeight; // include layout in the measurement
    stats.renders.pending = performance.now() - t0;
    stats.renders.pendingRows = pending.length;
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
    c.ph = h('div', {class: 'preview ph', 'aria-hidden': 'true'});
    c.who = h('strong', {class: 'who'});
    c.num = h('span', {class: 'num'});
    c.stage = h('span', {class: 'stage'});
    c.worker = h('span', {class: 'worker'});
    c.fill = h('div', {class: 'fill'});
    c.bar = h('div', {class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100'}, c.fill);
    c.node = h('span', {class: 'node'});
    c.elapsed = h('span', {class: 'elapsed'});
    c.cancel = h('button', {type: 'button', class: 'cancel danger small'}, 'Cancel');
    c.cancel.addEventListener('click', () => cancel(c.job, c.cancel));
    c.append(c.preview, c.ph,
      h('div', {class: 'meta'},
        h('div', {class: 'line1'}, c.who, c.num, c.cancel),
        h('div', {class: 'line2'}, c.stage, ' ', c.worker),
        c.bar,
        h('div', {class: 'line3'}, c.node, c.elapsed)));
    return c;
  }

  function updateCard(c, job) {
    c.job = job;
    setAttr(c, 'data-id', job.id);
    setText(c.who, ctx.participant(job.user_id));
    setText(c.num, `#${job.number}`);
    setAttr(c.cancel, 'aria-label', `Cancel job #${job.number}`);
    const p = progress.get(job.id);
    setText(c.worker, (p && p.worker) || job.worker || '');
    updateProgress(c, job, p);
    setText(c.elapsed, job.started_at ? fmtAge(job.started_at) : '');
    c.classList.toggle('gone', touched.has(job.id) && touched.get(job.id).status !== 'running');
  }

  function updateProgress(c, job, p) {
    const stage = stageOf(job);
    setAttr(c, 'data-stage', stage);
    setText(c.stage, stage === 'queued' ? 'Prefetched, waiting on' : stage === 'collecting' ? 'Collecting outputs from' : 'Running on');
    let pct = 0;
    if (stage === 'collecting') pct = 100;
    else if (p && p.max > 0) pct = Math.max(0, Math.min(100, Math.round((p.value / p.max) * 100)));
    const w = `${pct}%`;
    if (c.fill.style.width !== w) c.fill.style.width = w;
    setAttr(c.bar, 'aria-valuenow', pct);
    setAttr(c.bar, 'aria-label', `Progress of job #${job.number}`);
    setAttr(c.bar, 'aria-valuetext', p && p.max > 0 ? `${p.value} of ${p.max}` : stage);
    setText(c.node, stage === 'executing' && p && p.node ? `Node ${p.node}${p.max > 0 ? ` · step ${p.value}/${p.max}` : ''}` : '');
    const src = p && p.preview ? safeUrl(p.preview, {data: true}) : '';
    if (src && c.preview.getAttribute('src') !== src) {
      c.preview.src = src;
      c.preview.alt = `Latest preview of job #${job.number}`;
    }
    c.preview.hidden = !c.preview.getAttribute('src');
    c.ph.hidden = !c.preview.hidden;
  }

  function runningOrder() {
    const rank = {executing: 0, collecting: 0, queued: 1};
    return [...running.values()].sort((a, b) =>
      (rank[stageOf(a)] ?? 0) - (rank[stageOf(b)] ?? 0) ||
      String(a.worker || '').localeCompare(String(b.worker || '')) || a.number - b.number);
  }

  function renderRunning() {
    const t0 = performance.now();
    const jobs = runningOrder();
    reconcile(runningList, jobs, (j) => j.id, createCard, updateCard);
    runningEmpty.hidden = jobs.length > 0;
    setText(runningCount, jobs.length);
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

  // ---- recent ----
  function createRecent() {
    const li = h('li', {class: 'recent-row'});
    li.num = h('span', {class: 'num'});
    li.who = h('span', {class: 'who'});
    li.status = h('span', {class: 'status'});
    li.time = h('span', {class: 'time'});
    li.detail = h('span', {class: 'detail'});
    li.retry = h('button', {type: 'button', class: 'retry'}, 'Retry');
    li.retry.addEventListener('click', () => retry(li.job, li.retry));
    li.append(li.num, li.who, li.status, li.time, li.detail, h('span', {class: 'actions'}, li.retry));
    return li;
  }

  function updateRecent(li, job) {
    li.job = job;
    setAttr(li, 'data-id', job.id);
    setText(li.num, `#${job.number}`);
    setText(li.who, ctx.participant(job.user_id));
    setText(li.status, job.status);
    setAttr(li.status, 'data-status', job.status);
    const run = job.started_at && job.completed_at ? (Date.parse(job.completed_at) - Date.parse(job.started_at)) / 1000 : null;
    setText(li.time, run != null ? `ran ${fmtDuration(run)}` : fmtAge(job.completed_at || job.created_at) + ' ago');
    const detail = job.status === 'failed' && job.error ? `${job.error.type ? job.error.type + ': ' : ''}${job.error.message || ''}`
      : job.status === 'completed' && job.result && job.result.outputs ? `${job.result.outputs.length} output${job.result.outputs.length === 1 ? '' : 's'}${job.worker ? ' · ' + job.worker : ''}`
        : job.worker || '';
    setText(li.detail, detail);
    setAttr(li.detail, 'title', detail);
    li.retry.hidden = job.status !== 'failed' && job.status !== 'cancelled';
    setAttr(li.retry, 'aria-label', `Retry job #${job.number}`);
  }

  function renderRecent() {
    reconcile(recentList, recent, (j) => j.id, createRecent, updateRecent);
    recentEmpty.hidden = recent.length > 0;
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
  let pendingFetchedAt = 0;
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
    pendingFetchedAt = performance.now();
    for (const [id, t] of touched) if (pendingFetchedAt - t.at > 60000) touched.delete(id);
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
    recent = ((all && all.jobs) || []).filter((j) => FINISHED.has(j.status)).slice(0, RECENT_LIMIT);
    applyPending((p && p.jobs) || [], started);
    renderRunning();
    renderRecent();
    renderControls();
  }

  // ---- events ----
  function upsert(job, created) {
    const prev = known.get(job.id) ?? (created ? null : 'pending');
    const next = job.status;
    if (prev && FINISHED.has(prev)) return; // finished is final
    touched.set(job.id, {status: next, at: performance.now()});
    if (prev !== next) ctx.adjustCount(prev, next);
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
  ctx.on('seats', () => { if (view.loaded) mark('pending', 'running', 'recent'); });

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
  };
  renderControls();
  return view;
}
