// Workflows: publish a workflow file to every participant's workflow list,
// or withdraw it.

import {h, setText, setAttr, reconcile, fmtBytes, fmtTime, confirmButton} from '../dom.js';

const MAX_SIZE = 8 << 20;

export default function workflowsView(ctx) {
  const {api} = ctx;
  let items = [];

  const file = h('input', {type: 'file', id: 'workflow-file', accept: '.json,application/json', multiple: true});
  const drop = h('label', {class: 'filedrop', for: 'workflow-file', id: 'workflow-drop'},
    h('strong', null, 'Publish a workflow'),
    h('span', null, 'Choose or drop a ComfyUI workflow (.json). It appears in every participant\'s workflow list; a file of the same name is replaced.'),
    file);
  file.addEventListener('change', () => { upload([...file.files]); file.value = ''; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    upload([...(e.dataTransfer.files || [])]);
  });

  const tbody = h('tbody', {id: 'workflow-rows'});
  const empty = h('p', {class: 'empty'}, 'No workshop workflow is published.');
  const el = h('section', null, h('h2', null, 'Workshop workflows'), drop,
    h('div', {class: 'table-wrap'}, h('table', null,
      h('thead', null, h('tr', null, ['Name', 'Size', 'Published', '', 'Opens for newcomers'].map((t) => h('th', {scope: 'col'}, t)))), tbody)),
    empty);

  function nameOf(f) {
    let n = f.name.split(/[\\/]/).pop().trim();
    if (!n.toLowerCase().endsWith('.json')) n += '.json';
    return n;
  }

  async function upload(files) {
    for (const f of files) {
      const name = nameOf(f);
      if (f.size > MAX_SIZE) { ctx.toast(`${name} is larger than 8 MB.`, 'error'); continue; }
      const text = await f.text();
      try {
        const v = JSON.parse(text);
        if (!v || typeof v !== 'object') throw new Error('not an object');
      } catch {
        ctx.toast(`${name} is not a JSON workflow.`, 'error');
        continue;
      }
      const replacing = items.some((w) => w.name === name);
      await ctx.act(`Publish ${name}`, () => api.put(`/api/workflows/${api.seg(name)}`, text),
        {ok: replacing ? `${name} replaced for everyone` : `${name} published to everyone`});
    }
    await load().catch(() => {});
  }

  function createRow() {
    const tr = h('tr');
    tr.name = h('th', {scope: 'row'});
    tr.size = h('td');
    tr.time = h('td');
    tr.del = confirmButton('Withdraw', 'Sure? Withdraw', () => ctx.act(`Withdraw ${tr.w.name}`, async () => {
      await api.del(`/api/workflows/${api.seg(tr.w.name)}`);
      await load();
    }), {class: 'small danger'});
    // The one workflow a participant's page opens on their first visit.
    tr.def = h('button', {type: 'button', class: 'small default-toggle'});
    tr.def.addEventListener('click', () => {
      const {name, default: on} = tr.w;
      ctx.act(on ? `Stop opening ${name}` : `Open ${name} by default`, async () => {
        await (on ? api.del : api.put)(`/api/workflows/${api.seg(name)}/default`);
        await load();
      }, {ok: on ? `${name} no longer opens by default` : `${name} opens for every newcomer`});
    });
    tr.append(tr.name, tr.size, tr.time, h('td', null, tr.del), h('td', null, tr.def));
    return tr;
  }

  function updateRow(tr, w) {
    tr.w = w;
    setAttr(tr, 'data-name', w.name);
    setText(tr.name, w.name);
    setText(tr.size, fmtBytes(w.size));
    setText(tr.time, w.modified ? fmtTime(w.modified) : '—');
    setAttr(tr.del, 'aria-label', `Withdraw ${w.name}`);
    setText(tr.def, w.default ? 'Opens by default ✓' : 'Open by default');
    setAttr(tr.def, 'aria-pressed', w.default ? 'true' : 'false');
  }

  function render() {
    items.sort((a, b) => a.name.localeCompare(b.name));
    reconcile(tbody, items, (w) => w.name, createRow, updateRow);
    empty.hidden = items.length > 0;
  }

  async function load() {
    const r = await api.get('/api/workflows');
    items = (r && r.workflows) || [];
    render();
  }

  return {id: 'workflows', title: 'Workflows', el, load};
}
