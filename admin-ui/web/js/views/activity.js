// Activity log: who did what, when; filter by kind and text; live.

import {h, setText, setAttr, reconcile, fmtTime, debounce} from '../dom.js';

const LIMIT = 200;
const KEEP = 1000;
const KINDS = [['', 'Everything'], ['job', 'Jobs'], ['admin', 'Admin actions'], ['agent', 'GPU agents'], ['seat', 'Seats']];

export default function activityView(ctx) {
  const {api} = ctx;
  let entries = [];

  const kind = h('select', {id: 'activity-kind'}, KINDS.map(([v, t]) => h('option', {value: v}, t)));
  const q = h('input', {type: 'search', id: 'activity-text', placeholder: 'participant, job, action…', autocomplete: 'off'});
  const shown = h('span', {class: 'hint', id: 'activity-count'});
  kind.addEventListener('change', () => ctx.act('Load the activity', load));
  q.addEventListener('input', debounce(render, 120));
  const tbody = h('tbody', {id: 'activity-rows'});
  const empty = h('p', {class: 'empty'}, 'Nothing here.');
  const el = h('section', null,
    h('h2', null, 'Activity'),
    h('div', {class: 'filters'},
      h('label', {for: 'activity-kind'}, 'Show'), kind,
      h('label', {for: 'activity-text'}, 'Containing'), q, shown),
    h('div', {class: 'table-wrap'}, h('table', {class: 'activity'},
      h('thead', null, h('tr', null, ['Time', 'Who', 'Kind', 'What', 'Detail'].map((t) => h('th', {scope: 'col'}, t)))),
      tbody)),
    empty);

  function createRow() {
    const tr = h('tr');
    tr.time = h('td', {class: 'time'}, h('time'));
    tr.actor = h('td', {class: 'actor'});
    tr.kind = h('td', {class: 'kind'});
    tr.action = h('td', {class: 'action'});
    tr.detail = h('td', {class: 'detail'});
    tr.append(tr.time, tr.actor, tr.kind, tr.action, tr.detail);
    return tr;
  }

  function updateRow(tr, e) {
    setAttr(tr, 'data-id', e.id);
    setAttr(tr, 'data-kind', e.kind);
    const t = tr.time.firstChild;
    setText(t, fmtTime(e.time));
    setAttr(t, 'datetime', e.time);
    setText(tr.actor, e.actor === 'admin' ? 'Instructor' : e.user_id && e.actor === e.user_id ? ctx.participant(e.user_id) : e.actor);
    setText(tr.kind, e.kind);
    setText(tr.action, e.action);
    setText(tr.detail, [e.detail, e.job_id ? `job ${String(e.job_id).slice(0, 8)}` : ''].filter(Boolean).join(' · '));
  }

  function matches(e, text) {
    if (!text) return true;
    const hay = [e.actor, e.kind, e.action, e.detail, e.job_id, e.user_id, e.user_id ? ctx.participant(e.user_id) : '']
      .filter(Boolean).join(' ').toLowerCase();
    return text.split(/\s+/).every((w) => hay.includes(w));
  }

  function render() {
    const text = q.value.trim().toLowerCase();
    const list = entries.filter((e) => matches(e, text));
    reconcile(tbody, list, (e) => e.id, createRow, updateRow);
    empty.hidden = list.length > 0;
    setText(shown, `${list.length} of ${entries.length}`);
  }

  async function load() {
    const k = kind.value;
    const r = await api.get(`/api/activity?kind=${encodeURIComponent(k)}&limit=${LIMIT}`);
    entries = (r && r.entries) || [];
    render();
  }

  const renderSoon = debounce(render, 100, 500);

  return {
    id: 'activity',
    title: 'Activity',
    el,
    load,
    onEvent(msg) {
      if (msg.type !== 'activity' || !msg.data || !msg.data.id) return;
      if (kind.value && msg.data.kind !== kind.value) return;
      if (entries.some((e) => e.id === msg.data.id)) return;
      entries.unshift(msg.data);
      if (entries.length > KEEP) entries.length = KEEP;
      renderSoon();
    },
  };
}
