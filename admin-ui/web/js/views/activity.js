// Activity log: who did what, when, in sentences with job numbers that
// open the job; filter by kind and text; live.

import {h, setText, setAttr, reconcile, fmtTime, debounce, replace} from '../dom.js';
import {actorWords, entryWords, entryText} from '../words.js';

const LIMIT = 200;
const KEEP = 1000;
const KINDS = [['', 'Everything'], ['job', 'Jobs'], ['admin', 'Admin actions'], ['agent', 'GPU agents'], ['seat', 'Seats']];

export default function activityView(ctx) {
  const {api} = ctx;
  let entries = [];

  const kind = h('select', {id: 'activity-kind'}, KINDS.map(([v, t]) => h('option', {value: v}, t)));
  const q = h('input', {type: 'search', id: 'activity-text', placeholder: 'a name, #42, drained…', autocomplete: 'off'});
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
      h('thead', null, h('tr', null, ['Time', 'What happened'].map((t) => h('th', {scope: 'col'}, t)))),
      tbody)),
    empty);

  function createRow() {
    const tr = h('tr');
    tr.time = h('td', {class: 'time'}, h('time'));
    tr.what = h('td', {class: 'what'});
    tr.append(tr.time, tr.what);
    return tr;
  }

  function updateRow(tr, e) {
    setAttr(tr, 'data-id', e.id);
    setAttr(tr, 'data-kind', e.kind);
    const t = tr.time.firstChild;
    setText(t, fmtTime(e.time));
    setAttr(t, 'datetime', e.time);
    // Names change (a seat renamed): the sentence is rebuilt when they do.
    const key = `${e.id}\u0000${ctx.participant(e.user_id || '')}`;
    if (tr.whatKey !== key) {
      tr.whatKey = key;
      replace(tr.what, entryWords(ctx, e));
    }
  }

  function matches(e, text) {
    if (!text) return true;
    const hay = [entryText(ctx, e), actorWords(ctx, e), e.kind, e.job_number ? `#${e.job_number}` : '', e.worker]
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

  let seq = 0; // only the latest load's answer counts
  async function load() {
    const k = kind.value;
    const mine = ++seq;
    const r = await api.get(`/api/activity?kind=${encodeURIComponent(k)}&limit=${LIMIT}`);
    if (mine !== seq) return;
    entries = (r && r.entries) || [];
    render();
  }

  const renderSoon = debounce(render, 100, 500);
  ctx.on('seats', () => { if (view.loaded) renderSoon(); });

  const view = {
    id: 'activity',
    title: 'Activity',
    el,
    load,
    show: () => { if (entries.length) render(); },
    onEvent(msg) {
      if (msg.type !== 'activity' || !msg.data || !msg.data.id) return;
      if (kind.value && msg.data.kind !== kind.value) return;
      if (entries.some((e) => e.id === msg.data.id)) return;
      entries.unshift(msg.data);
      if (entries.length > KEEP) entries.length = KEEP;
      renderSoon();
    },
  };
  return view;
}
