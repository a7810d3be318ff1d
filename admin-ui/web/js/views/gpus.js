// GPUs: every agent and its ComfyUI instances, with drain and undrain.

import {h, setText, setAttr, reconcile, fmtMiB} from '../dom.js';

const STATE_TEXT = {idle: 'Idle', busy: 'Busy', draining: 'Draining', unreachable: 'Unreachable'};

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

  function drain(wk, undo, button) {
    const what = undo ? 'undrain' : 'drain';
    return ctx.act(`${undo ? 'Undrain' : 'Drain'} ${wk.id}`, async () => {
      await api.post(`/api/workers/${seg(wk.agent)}/${seg(wk.instance)}/${what}`);
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
    const connected = group.workers.filter((w) => w.connected).length;
    setText(a.heading, `${group.agent} · ${connected}/${group.workers.length} instance${group.workers.length === 1 ? '' : 's'} connected`);
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
    c.error = h('p', {class: 'error', hidden: true});
    c.btn = h('button', {type: 'button', class: 'drain'});
    c.btn.addEventListener('click', () => drain(c.worker, c.worker.draining, c.btn));
    c.append(h('div', {class: 'gpu-head'}, c.name, c.state), c.gpu, c.mem.wrap, c.util.wrap,
      h('dl', {class: 'facts'},
        h('dt', null, 'Current job'), c.current,
        h('dt', null, 'Prefetched'), c.queued,
        h('dt', null, 'Jobs done'), c.done),
      c.error, c.btn);
    return c;
  }

  function updateWorker(c, w) {
    c.worker = w;
    setAttr(c, 'data-id', w.id);
    const st = !w.connected ? 'unreachable' : w.state || (w.draining ? 'draining' : 'idle');
    setAttr(c, 'data-state', st);
    setText(c.name, w.instance || w.id);
    setText(c.state, (STATE_TEXT[st] || st) + (w.draining && st !== 'draining' ? ' · draining' : ''));
    const g = w.gpu || {};
    setText(c.gpu, [g.name || 'GPU unknown', w.url || ''].filter(Boolean).join(' · '));
    const total = g.memory_total_mib, used = g.memory_used_mib;
    setMeter(c.mem, total > 0 ? (used / total) * 100 : null, total > 0 ? `${fmtMiB(used)} / ${fmtMiB(total)}` : 'unknown');
    const u = g.utilization_pct;
    setMeter(c.util, u != null && u >= 0 ? u : null, u != null && u >= 0 ? `${Math.round(u)}%` : 'unknown');
    setText(c.current, jobLabel(w.current_job));
    setText(c.queued, (w.queued_jobs || []).length ? (w.queued_jobs || []).map(jobLabel).join(', ') : '—');
    setText(c.done, w.jobs_done ?? 0);
    c.error.hidden = !w.error;
    setText(c.error, w.error || '');
    setText(c.btn, w.draining ? 'Undrain' : 'Drain');
    setAttr(c.btn, 'aria-label', `${w.draining ? 'Undrain' : 'Drain'} ${w.id}`);
    setAttr(c.btn, 'title', w.draining ? 'Give this instance new jobs again' : 'Finish the current jobs, then give this instance no new ones');
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
    setText(summary, ws.length ? `${n((w) => w.connected)} of ${ws.length} instances connected · ${n((w) => w.state === 'busy')} busy · ${n((w) => w.state === 'idle')} idle · ${n((w) => w.draining)} draining` : '');
  }

  ctx.on('workers', () => { if (view.loaded) render(); });

  const view = {
    id: 'gpus',
    title: 'GPUs',
    el,
    async load() { render(); },
    show: render,
  };
  return view;
}
