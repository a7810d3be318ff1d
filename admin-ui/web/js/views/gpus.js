// GPUs: every agent and its ComfyUI instances, with drain and undrain; an
// instance set aside (it kept failing jobs) with its reason and Put back; a
// host whose agent went, still listed with the jobs it holds and the time
// left before they go back to the queue, and Remove.

import {h, setText, setAttr, reconcile, fmtMiB, fmtDuration, confirmButton} from '../dom.js';

const STATE_TEXT = {
  idle: 'Idle', busy: 'Busy', draining: 'Draining', set_aside: 'Set aside',
  connecting: 'Connecting', unreachable: 'Unreachable', disconnected: 'Disconnected',
};

const REASON_TEXT = {
  out_of_memory: 'out of GPU memory', gpu_error: 'GPU error', missing_node: 'node missing here',
  missing_model: 'model missing here', lost: 'lost (crash or restart)',
};

/** Seconds until an unreachable instance's jobs go back to the queue, as of now. */
export function graceLeft(w, fetchedAt, now = performance.now()) {
  if (w.grace_remaining_s == null) return null;
  return Math.max(0, w.grace_remaining_s - (now - fetchedAt) / 1000);
}

const lost = (w) => w.state === 'disconnected' || w.state === 'unreachable';

/**
 * The header's alert: GPU hosts that went and instances set aside, with the
 * jobs that wait for them; null when all is well.
 */
export function gpuAlert(workers, fetchedAt, now = performance.now()) {
  const parts = [];
  const byAgent = new Map();
  for (const w of workers) {
    if (!byAgent.has(w.agent)) byAgent.set(w.agent, []);
    byAgent.get(w.agent).push(w);
  }
  let held = 0, left = null;
  for (const [agent, ws] of byAgent) {
    const gone = ws.filter(lost);
    if (gone.length === ws.length && ws.every((w) => w.state === 'disconnected')) parts.push(`GPU host ${agent} disconnected`);
    else for (const w of gone) parts.push(`${w.id} unreachable`);
    for (const w of gone) {
      held += (w.held_jobs || []).length;
      const g = graceLeft(w, fetchedAt, now);
      if (g != null && (w.held_jobs || []).length) left = left == null ? g : Math.min(left, g);
    }
  }
  for (const w of workers) if (w.set_aside) parts.push(`${w.id} set aside`);
  if (!parts.length) return null;
  let text = parts.join(' · ');
  if (held) text += ` · ${held} job${held === 1 ? '' : 's'} waiting${left != null ? `, requeued in ${fmtDuration(left)}` : ''}`;
  return {text, counting: left != null};
}

export default function gpusView(ctx) {
  const {api} = ctx;
  const seg = api.seg;
  const list = h('div', {id: 'gpu-list', class: 'agents'});
  const empty = h('p', {class: 'empty'}, 'No GPU host is connected. Start gpu-agent on a GPU host with this server\'s address and agent token.');
  const summary = h('p', {class: 'summary', id: 'gpu-summary'});
  const el = h('section', null, h('h2', null, 'GPU hosts and instances'), summary, empty, list);

  function jobLabel(id) {
    if (!id) return '—';
    const job = ctx.jobById && ctx.jobById(id);
    if (job && job.number !== '?') return `#${job.number} · ${ctx.participant(job.user_id)}`;
    return id.slice(0, 8);
  }
  const jobList = (ids) => (ids || []).length ? ids.map(jobLabel).join(', ') : '—';

  function change(wk, what, label, button, method = 'post') {
    const path = `/api/workers/${seg(wk.agent)}/${seg(wk.instance)}${what ? `/${what}` : ''}`;
    return ctx.act(`${label} ${wk.id}`, async () => {
      await api[method](path);
      await ctx.reloadWorkers();
    }, {button});
  }

  function createAgent() {
    const a = h('section', {class: 'agent'});
    a.heading = h('h3', null);
    a.cards = h('div', {class: 'cards'});
    a.append(a.heading, a.cards);
    return a;
  }

  function updateAgent(a, group) {
    setAttr(a, 'data-agent', group.agent);
    const n = group.workers.length;
    const connected = group.workers.filter((w) => w.connected).length;
    const gone = group.workers.every((w) => w.state === 'disconnected');
    setAttr(a, 'data-state', gone ? 'disconnected' : null);
    setText(a.heading, gone
      ? `${group.agent} · disconnected: its gpu-agent is not connected`
      : `${group.agent} · ${connected}/${n} instance${n === 1 ? '' : 's'} connected`);
    reconcile(a.cards, group.workers, (w) => w.id, createWorker, updateWorker);
  }

  function meter(label) {
    const fill = h('div', {class: 'fill'});
    const bar = h('div', {class: 'bar', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': label}, fill);
    const text = h('span', {class: 'meter-text'});
    const wrap = h('div', {class: 'meter'}, h('span', {class: 'meter-label'}, label), bar, text);
    return {wrap, bar, fill, text};
  }

  function setMeter(m, pct, text) {
    const known = pct != null && isFinite(pct) && pct >= 0;
    const v = known ? Math.min(100, Math.max(0, pct)) : 0;
    m.fill.style.width = `${v}%`;
    setAttr(m.bar, 'aria-valuenow', known ? Math.round(v) : null);
    setAttr(m.bar, 'aria-valuetext', text);
    m.wrap.classList.toggle('unknown', !known);
    m.wrap.classList.toggle('high', known && v >= 90);
    setText(m.text, text);
  }

  function createWorker() {
    const c = h('article', {class: 'gpu-card'});
    c.name = h('h4', null);
    c.state = h('span', {class: 'state-badge'});
    c.gpu = h('p', {class: 'gpu-name'});
    c.mem = meter('Memory');
    c.util = meter('Utilisation');
    c.current = h('dd', null);
    c.queued = h('dd', null);
    c.done = h('dd', null);
    // Why it needs the instructor: lost with jobs waiting, or set aside.
    c.lost = h('p', {class: 'notice lost', role: 'status', hidden: true});
    c.aside = h('div', {class: 'notice aside', hidden: true});
    c.asideReason = h('p', {class: 'reason'});
    c.asideWhen = h('p', {class: 'when'});
    c.aside.append(h('strong', null, 'Set aside: it kept failing jobs that ran on other instances.'), c.asideReason, c.asideWhen);
    c.failures = h('p', {class: 'notice failures', hidden: true});
    c.error = h('p', {class: 'error', hidden: true});
    c.btn = h('button', {type: 'button', class: 'drain'});
    c.btn.addEventListener('click', () => change(c.worker, c.worker.draining ? 'undrain' : 'drain', c.worker.draining ? 'Undrain' : 'Drain', c.btn));
    c.putBack = h('button', {type: 'button', class: 'put-back primary', hidden: true}, 'Put back');
    c.putBack.addEventListener('click', () => change(c.worker, 'put-back', 'Put back', c.putBack));
    c.remove = confirmButton('Remove', 'Remove? Its jobs go back to the queue now', () => change(c.worker, '', 'Remove', c.remove, 'del'), {class: 'remove danger'});
    c.append(h('div', {class: 'gpu-head'}, c.name, c.state), c.gpu, c.mem.wrap, c.util.wrap,
      h('dl', {class: 'facts'},
        h('dt', null, 'Current job'), c.current,
        h('dt', null, 'Prefetched'), c.queued,
        h('dt', null, 'Jobs done'), c.done),
      c.lost, c.aside, c.failures, c.error, h('div', {class: 'actions'}, c.putBack, c.btn, c.remove));
    return c;
  }

  function lostText(w) {
    const held = w.held_jobs || [];
    const since = w.lost_at ? ` for ${fmtDuration((Date.now() - Date.parse(w.lost_at)) / 1000)}` : '';
    const what = w.state === 'disconnected' ? `Its gpu-agent has been gone${since}.` : `Its ComfyUI has not answered${since}.`;
    if (!held.length) return `${what} No job waits for it.`;
    const left = graceLeft(w, ctx.state.workersAt);
    return `${what} Holds ${held.length} job${held.length === 1 ? '' : 's'} (${jobList(held)}): ` +
      (left > 0 ? `back to the queue in ${fmtDuration(left)} unless it returns.` : 'going back to the queue now.');
  }

  function updateWorker(c, w) {
    c.worker = w;
    setAttr(c, 'data-id', w.id);
    const st = w.state || (!w.connected ? 'unreachable' : w.draining ? 'draining' : 'idle');
    setAttr(c, 'data-state', st);
    setAttr(c, 'data-aside', w.set_aside ? '1' : null);
    setText(c.name, w.instance || w.id);
    const flags = [w.draining && st !== 'draining' && 'draining', w.set_aside && st !== 'set_aside' && 'set aside'].filter(Boolean);
    setText(c.state, [STATE_TEXT[st] || st, ...flags].join(' · '));
    const g = w.gpu || {};
    setText(c.gpu, [g.name || 'GPU unknown', w.url || ''].filter(Boolean).join(' · '));
    const total = g.memory_total_mib, used = g.memory_used_mib;
    setMeter(c.mem, total > 0 ? (used / total) * 100 : null, total > 0 ? `${fmtMiB(used)} / ${fmtMiB(total)}` : 'unknown');
    const u = g.utilization_pct;
    setMeter(c.util, u != null && u >= 0 ? u : null, u != null && u >= 0 ? `${Math.round(u)}%` : 'unknown');
    setText(c.current, jobLabel(w.current_job));
    setText(c.queued, jobList(w.queued_jobs));
    setText(c.done, w.jobs_done ?? 0);

    c.lost.hidden = !lost(w);
    if (lost(w)) setText(c.lost, lostText(w));
    c.aside.hidden = !w.set_aside;
    if (w.set_aside) {
      setText(c.asideReason, w.set_aside.reason);
      setText(c.asideWhen, `Since ${new Date(w.set_aside.at).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})}. Fix it (restart its ComfyUI, free the GPU), then put it back.`);
    }
    const fails = w.set_aside ? [] : (w.recent_failures || []);
    c.failures.hidden = !fails.length;
    setText(c.failures, fails.length ? `${fails.length} job${fails.length === 1 ? '' : 's'} in a row failed here (last: ${REASON_TEXT[fails[fails.length - 1].reason] || fails[fails.length - 1].reason}); they were given to other instances.` : '');
    c.error.hidden = !w.error;
    setText(c.error, w.error || '');

    c.putBack.hidden = !w.set_aside;
    setAttr(c.putBack, 'aria-label', `Put back ${w.id}`);
    setAttr(c.putBack, 'title', 'Give this instance jobs again');
    // A drained instance can be undrained while away; draining needs it here.
    c.btn.hidden = st === 'disconnected' && !w.draining;
    setText(c.btn, w.draining ? 'Undrain' : 'Drain');
    setAttr(c.btn, 'aria-label', `${w.draining ? 'Undrain' : 'Drain'} ${w.id}`);
    setAttr(c.btn, 'title', w.draining ? 'Give this instance new jobs again' : 'Finish the current jobs, then give this instance no new ones');
    c.remove.hidden = st !== 'disconnected';
    setAttr(c.remove, 'aria-label', `Remove ${w.id}`);
    setAttr(c.remove, 'title', 'It is not coming back: take it off the list and requeue its jobs now');
  }

  function render() {
    const groups = new Map();
    for (const w of ctx.state.workers) {
      const agent = w.agent || (w.id || '').split('/')[0] || '?';
      if (!groups.has(agent)) groups.set(agent, {agent, workers: []});
      groups.get(agent).workers.push(w);
    }
    const list2 = [...groups.values()].sort((a, b) => a.agent.localeCompare(b.agent));
    for (const g of list2) g.workers.sort((a, b) => String(a.instance).localeCompare(String(b.instance), undefined, {numeric: true}));
    reconcile(list, list2, (g) => g.agent, createAgent, updateAgent);
    empty.hidden = list2.length > 0;
    const ws = ctx.state.workers;
    const n = (f) => ws.filter(f).length;
    const extra = [[n((w) => w.state === 'disconnected'), 'disconnected'], [n((w) => w.state === 'unreachable'), 'unreachable'],
      [n((w) => w.set_aside), 'set aside']].filter(([k]) => k).map(([k, what]) => ` · ${k} ${what}`).join('');
    setText(summary, ws.length ? `${n((w) => w.connected)} of ${ws.length} instances connected · ${n((w) => w.state === 'busy')} busy · ${n((w) => w.state === 'idle')} idle · ${n((w) => w.draining)} draining${extra}` : '');
  }

  ctx.on('workers', () => { if (view.loaded) render(); });
  ctx.on('gpu-tick', () => { if (view.loaded && ctx.isActive('gpus')) render(); });

  const view = {
    id: 'gpus',
    title: 'GPUs',
    el,
    async load() { render(); },
    show: render,
  };
  return view;
}
