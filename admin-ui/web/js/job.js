// What every view says about a job: its priority's name, its error in a
// line and in full, its outputs' media.

import {h, safeUrl} from './dom.js';

export const PRIORITIES = [
  {value: 0, name: 'Instructor'},
  {value: 1, name: 'High'},
  {value: 2, name: 'Normal'},
  {value: 3, name: 'Low'},
];
export const prioName = (p) => (PRIORITIES[p] ? PRIORITIES[p].name : `P${p}`);

export const FINISHED = new Set(['completed', 'failed', 'cancelled']);

/** "gpu-a/0" or "" : where the job ran, or last ran. */
export const instanceOf = (job) => job.worker || '';

/** The error in one line: "execution_error: CUDA out of memory ...". */
export function errorSummary(job) {
  const e = job && job.error;
  if (!e) return '';
  const first = String(e.message || '').split('\n')[0];
  return e.type && e.type !== 'cancelled' ? `${e.type}: ${first}` : first;
}

function parseDetails(raw) {
  if (raw == null) return null;
  if (typeof raw === 'object') return raw;
  try { return JSON.parse(raw); } catch { return String(raw); }
}

const MAX_DETAIL = 20000;

/**
 * The whole error: the message, where it happened, and what ComfyUI said
 * (its traceback, or each node's validation errors).
 */
export function errorBody(job) {
  const e = job.error || {};
  const d = parseDetails(e.details);
  const parts = [h('p', {class: 'err-message'}, e.message || '(no message)')];
  const facts = [];
  const fact = (k, v) => { if (v) facts.push(h('dt', null, k), h('dd', null, String(v))); };
  fact('Kind', e.type);
  fact('Instance', instanceOf(job));
  if (d && typeof d === 'object') {
    fact('Node', d.node_id ? `${d.node_id}${d.node_type ? ` (${d.node_type})` : ''}` : '');
    fact('Exception', d.exception_type);
  }
  if (facts.length) parts.push(h('dl', {class: 'facts err-facts'}, facts));
  if (d && typeof d === 'object' && Array.isArray(d.traceback) && d.traceback.length) {
    parts.push(h('pre', {class: 'err-trace'}, d.traceback.join('').slice(-MAX_DETAIL)));
  } else if (d && typeof d === 'object' && d.node_errors && Object.keys(d.node_errors).length) {
    parts.push(h('ul', {class: 'err-nodes'}, Object.entries(d.node_errors).map(([node, ne]) =>
      h('li', null, h('strong', null, `Node ${node}${ne.class_type ? ` (${ne.class_type})` : ''}: `),
        (ne.errors || []).map((x) => [x.message, x.details ? ` — ${x.details}` : '']).flat().join('; ')))));
  } else if (d != null && d !== '') {
    const text = typeof d === 'string' ? d : JSON.stringify(d, null, 2);
    parts.push(h('pre', {class: 'err-trace'}, text.length > MAX_DETAIL ? `${text.slice(0, MAX_DETAIL)}\n…` : text));
  }
  return h('div', {class: 'err-body'}, parts);
}

export function mimeOf(name, mime) {
  if (mime) return mime;
  const ext = String(name || '').toLowerCase().split('.').pop();
  return {png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif',
    mp4: 'video/mp4', webm: 'video/webm', mov: 'video/quicktime', mkv: 'video/x-matroska'}[ext] || '';
}

/** An output's image or video element. */
export function outputMedia(o, alt, {controls = false, lazy = true} = {}) {
  const src = safeUrl(o.url);
  if (mimeOf(o.name, o.mime).startsWith('video/')) {
    return h('video', {src: src || null, muted: true, preload: 'metadata', playsinline: true, controls, 'aria-label': `Video ${o.name}`});
  }
  return h('img', {src: src || null, alt, loading: lazy ? 'lazy' : 'eager', decoding: 'async'});
}

/** The name a downloaded output gets: "seat07-ComfyUI_00001_.png". */
export function downloadName(o, seat) {
  const prefix = seat ? `seat${String(seat).padStart(2, '0')}-` : '';
  return prefix + String(o.name || 'output').replace(/[\\/:*?"<>|]+/g, '_');
}
