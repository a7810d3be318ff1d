// The job detail: everything about one job in a dialog (who, where, when,
// why it failed, what it made, what happened to it, its prompt), with its
// actions. Any view opens it with ctx.openJob(id); it follows the job live.

import {h, setText, fmtTime, fmtDuration, fmtEta, fmtBytes, seatOf, debounce} from './dom.js';
import {modal} from './dialogs.js';
import {prioName, errorBody, outputMedia, downloadName, FINISHED} from './job.js';
import {entryWords} from './words.js';

export function jobDetail(ctx) {
  const {api} = ctx;
  const box = modal({id: 'job-dialog', label: 'Job detail', wide: true});
  let current = '';
  let seq = 0;

  async function open(id) {
    current = id;
    const mine = ++seq;
    if (!box.el.open) box.open('Job', h('p', {class: 'empty'}, 'Loading…'));
    let d;
    try {
      d = await api.get(`/api/jobs/${api.seg(id)}/detail`);
    } catch (e) {
      if (mine === seq) box.open('Job', h('p', {class: 'error', role: 'alert'}, `Could not load the job: ${e.message}`));
      return;
    }
    if (mine !== seq || current !== id) return; // another job was opened meanwhile
    render(d);
  }

  function render(d) {
    const j = d.job;
    const who = ctx.participant(j.user_id);
    const keepOpen = new Set([...box.body.querySelectorAll('details[open]')].map((x) => x.dataset.part));
    const facts = [];
    const fact = (k, v, id) => { if (v != null && v !== '') facts.push(h('dt', null, k), h('dd', id ? {id} : null, String(v))); };
    fact('Participant', d.seat && d.seat.name ? `Seat ${d.seat.seat} · ${d.seat.name}` : who);
    fact('Status', j.status, 'jd-status');
    fact('Priority', `${j.priority} · ${prioName(j.priority)}`);
    if (j.status === 'pending') fact('Place', `${j.position || '—'} · starts ${fmtEta(j.eta_seconds, ctx.state.status.paused)}`);
    fact('Instance', j.worker || (j.status === 'pending' ? 'not yet' : '—'), 'jd-instance');
    fact('Attempts', j.attempts);
    fact('Submitted', fmtTime(j.created_at));
    if (j.started_at) fact('Started', fmtTime(j.started_at));
    if (j.completed_at) fact('Finished', fmtTime(j.completed_at));
    if (d.wait_seconds != null) fact('Waited', fmtDuration(d.wait_seconds));
    if (d.run_seconds != null) fact('Ran', fmtDuration(d.run_seconds));

    const sections = [h('dl', {class: 'facts job-facts'}, facts)];
    if (j.error && j.status !== 'completed') {
      sections.push(h('section', {class: ['jd-error', j.status === 'failed' && 'failed'], 'aria-labelledby': 'jd-h-error'},
        h('h3', {id: 'jd-h-error'}, j.status === 'failed' ? 'Why it failed' : j.status === 'cancelled' ? 'Cancelled' : 'Last problem'),
        errorBody(j)));
    }
    if (d.outputs.length) {
      sections.push(h('section', {'aria-labelledby': 'jd-h-out'},
        h('h3', {id: 'jd-h-out'}, `Outputs (${d.outputs.length})`),
        h('ul', {class: 'jd-outputs'}, d.outputs.map((o) => h('li', null,
          h('a', {href: o.url, target: '_blank', rel: 'noopener', class: 'media'}, outputMedia(o, `${o.name} by ${who}`)),
          h('span', {class: 'name'}, o.name),
          h('a', {class: 'button small', href: o.url, download: downloadName(o, seatOf(j.user_id)),
            'aria-label': `Download ${o.name}`}, `Download · ${fmtBytes(o.size)}`))))));
    }
    sections.push(h('section', {'aria-labelledby': 'jd-h-hist'},
      h('h3', {id: 'jd-h-hist'}, 'What happened'),
      d.history.length
        ? h('ol', {class: 'jd-history'}, d.history.map((e) =>
          h('li', null, h('time', {datetime: e.time}, fmtTime(e.time)), ' ', h('span', null, entryWords(ctx, e)))))
        : h('p', {class: 'empty'}, 'Nothing in the activity log about this job.')));
    sections.push(promptSection(j, 'prompt', 'Prompt (API format)', j.workflow, `job-${j.number}-prompt.json`));
    const ui = j.extra_data && j.extra_data.extra_pnginfo && j.extra_data.extra_pnginfo.workflow;
    if (ui) sections.push(promptSection(j, 'workflow', 'Workflow (open it in ComfyUI)', ui, `job-${j.number}-workflow.json`));
    for (const x of sections) if (x.dataset && keepOpen.has(x.dataset.part)) x.open = true;

    const actions = [];
    if (!FINISHED.has(j.status)) {
      if (j.status === 'pending') actions.push(button('Move to the top', 'jd-top', () => api.post(`/api/jobs/${api.seg(j.id)}/move`, {to: 'top'})));
      actions.push(button('Cancel this job', 'jd-cancel', () => api.del(`/api/jobs/${api.seg(j.id)}`), 'danger'));
    } else if (j.status !== 'completed') {
      actions.push(button('Retry', 'jd-retry', async () => {
        const n = await api.post(`/api/jobs/${api.seg(j.id)}/retry`);
        ctx.toast(`Job #${j.number} queued again as #${n.number}`, 'ok');
        open(n.id);
      }));
    }
    box.open(`Job #${j.number} · ${who}`, sections, actions.length ? h('div', {class: 'dialog-actions'}, actions) : null);
    box.el.dataset.job = j.id;
  }

  function button(label, id, fn, kind) {
    const b = h('button', {type: 'button', id, class: kind});
    b.textContent = label;
    b.addEventListener('click', () => ctx.act(label, async () => { await fn(); await open(current); }, {button: b}));
    return b;
  }

  function promptSection(j, part, label, value, file) {
    const text = JSON.stringify(value, null, 2) || '';
    const nodes = !value || typeof value !== 'object' ? 0 : Array.isArray(value.nodes) ? value.nodes.length : Object.keys(value).length;
    const pre = h('pre', {class: 'jd-json'});
    const details = h('details', {class: 'jd-part', dataset: {part}},
      h('summary', null, label, nodes ? ` · ${nodes} nodes` : '', ` · ${fmtBytes(text.length)}`),
      h('a', {class: 'button small', download: file, href: '#', onclick: (e) => download(e, text, file)}, `Download ${file}`),
      pre);
    // Big graphs are put on the page only when someone looks.
    details.addEventListener('toggle', () => { if (details.open && !pre.textContent) setText(pre, text); });
    return details;
  }

  function download(e, text, file) {
    e.preventDefault();
    const url = URL.createObjectURL(new Blob([text], {type: 'application/json'}));
    const a = h('a', {href: url, download: file});
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  const refresh = debounce(() => { if (box.el.open && current) open(current); }, 250, 1000);
  box.onClose = () => { current = ''; seq++; };

  return {
    open,
    onEvent(msg) {
      if (!box.el.open || !current) return;
      if ((msg.type === 'job_updated' && msg.job && msg.job.id === current) ||
        (msg.type === 'activity' && msg.data && msg.data.job_id === current)) refresh();
    },
  };
}
