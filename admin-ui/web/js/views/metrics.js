// Metrics: jobs done, wait and run times, GPU busy fraction, usage per
// participant, and the workshop's timeline.

import {h, replace, setText, fmtDuration, debounce} from '../dom.js';
import {timeline, bars} from '../charts.js';

export default function metricsView(ctx) {
  const {api} = ctx;
  let data = null;
  let stale = false;

  const tile = (id, label) => {
    const v = h('span', {class: 'value', id});
    return {el: h('div', {class: 'tile'}, v, h('span', {class: 'label'}, label)), v};
  };
  const tiles = {
    done: tile('m-done', 'jobs done'),
    failed: tile('m-failed', 'failed'),
    wait: tile('m-wait', 'median wait'),
    run: tile('m-run', 'median run time'),
    busy: tile('m-busy', 'GPU busy, average'),
  };
  const timelineBox = h('div', {class: 'chart-box', id: 'chart-timeline'});
  const busyBox = h('div', {class: 'chart-box', id: 'chart-busy'});
  const usersBox = h('div', {class: 'chart-box', id: 'chart-users'});
  const refresh = h('button', {type: 'button', id: 'metrics-refresh'}, 'Refresh');
  refresh.addEventListener('click', () => ctx.act('Load the metrics', load, {button: refresh}));

  const el = h('section', null,
    h('div', {class: 'view-head'}, h('h2', null, 'Metrics'), refresh),
    h('div', {class: 'tiles'}, Object.values(tiles).map((t) => t.el)),
    h('section', {class: 'block'}, h('h3', null, 'The workshop, minute by minute'), timelineBox),
    h('div', {class: 'two'},
      h('section', {class: 'block'}, h('h3', null, 'GPU busy fraction per instance'), busyBox),
      h('section', {class: 'block'}, h('h3', null, 'GPU time per participant'), usersBox)));

  const p90 = (t, label, m) => setText(t.el.querySelector('.label'), m && m.p90 != null ? `${label} · p90 ${fmtDuration(m.p90)}` : label);

  function render() {
    if (!data) return;
    const d = data;
    setText(tiles.done.v, d.jobs_done ?? 0);
    setText(tiles.failed.v, d.jobs_failed ?? 0);
    setText(tiles.wait.v, d.wait_seconds ? fmtDuration(d.wait_seconds.p50) : '—');
    setText(tiles.run.v, d.run_seconds ? fmtDuration(d.run_seconds.p50) : '—');
    p90(tiles.wait, 'median wait', d.wait_seconds);
    p90(tiles.run, 'median run time', d.run_seconds);
    const inst = d.instances || [];
    const avg = inst.length ? inst.reduce((a, i) => a + (i.busy_fraction || 0), 0) / inst.length : null;
    setText(tiles.busy.v, avg == null ? '—' : `${Math.round(avg * 100)}%`);

    const tl = d.timeline || [];
    replace(timelineBox, tl.length ? timeline(tl, [
      {key: 'completed', name: 'Completed per minute', kind: 'bar', cls: 's-done'},
      {key: 'pending', name: 'Pending', kind: 'line', cls: 's-pending'},
      {key: 'running', name: 'Running', kind: 'line', cls: 's-running'},
    ], {title: 'Jobs over the workshop'}) : h('p', {class: 'empty'}, 'No activity yet.'));

    replace(busyBox, inst.length ? bars(inst.map((i) => ({
      label: i.id, value: i.busy_fraction || 0,
      text: `${Math.round((i.busy_fraction || 0) * 100)}% · ${i.jobs_done ?? 0} jobs`,
    })), {max: 1, cls: 'busy'}) : h('p', {class: 'empty'}, 'No GPU instance yet.'));

    const users = [...(d.participants || [])].sort((a, b) => (b.gpu_seconds || 0) - (a.gpu_seconds || 0));
    const shown = users.slice(0, 20);
    replace(usersBox, shown.length ? [bars(shown.map((u) => ({
      label: ctx.participant(u.user_id), value: u.gpu_seconds || 0,
      text: `${fmtDuration(u.gpu_seconds)} · ${u.jobs ?? 0} jobs`,
    })), {cls: 'users'}), users.length > shown.length ? h('p', {class: 'note'}, `and ${users.length - shown.length} more`) : null]
      : h('p', {class: 'empty'}, 'Nobody has run a job yet.'));
  }

  async function load() {
    data = await api.get('/api/metrics');
    stale = false;
    render();
  }

  const reloadSoon = debounce(() => {
    if (ctx.isActive('metrics')) load().catch(() => {});
    else stale = true;
  }, 3000, 10000);

  return {
    id: 'metrics',
    title: 'Metrics',
    el,
    load,
    show() { if (stale) load().catch(() => {}); },
    onEvent(msg) {
      if (msg.type === 'job_updated' && msg.job && ['completed', 'failed'].includes(msg.job.status)) reloadSoon();
    },
  };
}
