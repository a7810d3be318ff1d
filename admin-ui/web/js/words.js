// Activity entries as sentences: "Seat 7 · Alice submitted job #42",
// "Ann drained GPU demo-gpu/0". Job numbers are buttons that open the job.

import {h} from './dom.js';

/** A button naming a job ("#42") that opens its detail. */
export function jobLink(ctx, id, number) {
  const label = number ? `#${number}` : 'a job';
  return h('button', {type: 'button', class: 'link job-link', dataset: {job: id},
    'aria-label': `Open job ${label}`, onclick: () => ctx.openJob(id)}, label);
}

/** Who did it, in words. */
export function actorWords(ctx, e) {
  switch (e.kind) {
    case 'job': return e.actor === 'system' ? 'Workshop' : ctx.participant(e.user_id || e.actor);
    case 'agent': return 'GPU host';
    default:
      if (e.actor === 'admin') return 'Instructor'; // entries from before names
      if (e.actor === 'system') return 'Workshop';
      if (e.actor === 'admin token') return 'Admin token'; // a script or the CLI
      return e.actor || '—';
  }
}

/** The entry as a sentence: an array of strings and nodes. */
export function entryWords(ctx, e) {
  const job = () => (e.job_id ? jobLink(ctx, e.job_id, e.job_number) : 'a job');
  const who = e.user_id ? ctx.participant(e.user_id) : '';
  const on = e.worker ? ` on ${e.worker}` : '';
  switch (e.kind) {
    case 'job':
      switch (e.action) {
        case 'submitted':
          return [who, ' submitted job ', job(), e.detail ? ` at ${e.detail}` : ''];
        case 'completed':
          return ['Job ', job(), ` of ${who} completed${on}`, e.detail ? ` · ${e.detail}` : ''];
        case 'failed':
          return ['Job ', job(), ` of ${who} failed${on}`, e.detail ? `: ${e.detail}` : ''];
        case 'cancelled':
          // "cancelled by the instructor" says it all; other reasons follow.
          if (/^cancelled /.test(e.detail || '')) return ['Job ', job(), ` of ${who} was ${e.detail}`];
          return ['Job ', job(), ` of ${who} was cancelled`, e.detail && e.detail !== 'cancelled' ? ` (${e.detail})` : ''];
        case 'requeued':
          return ['Job ', job(), ` of ${who} went back to the queue`, e.worker ? ` from ${e.worker}` : '', e.detail ? `: ${e.detail}` : ''];
      }
      return ['Job ', job(), ` of ${who} ${e.action}`, e.detail ? `: ${e.detail}` : ''];
    case 'agent':
      return [`GPU host ${String(e.actor || '').replace(/^agent /, '')} ${e.action}`, e.detail ? ` (${e.detail})` : ''];
    case 'admin': {
      const parts = [`${actorWords(ctx, e)} `];
      // "cancelled job #42 of seat 7": the number becomes the job's link.
      const mark = e.job_id && e.job_number ? `job #${e.job_number}` : '';
      const at = mark ? e.action.indexOf(mark) : -1;
      if (at >= 0) parts.push(e.action.slice(0, at), 'job ', job(), e.action.slice(at + mark.length));
      else parts.push(e.action);
      if (e.detail) parts.push(` (${e.detail})`);
      return parts;
    }
  }
  return [`${actorWords(ctx, e)} ${e.action}`, e.detail ? ` ${e.detail}` : ''];
}

/** The sentence as plain text, for search. */
export function entryText(ctx, e) {
  return entryWords(ctx, e).map((p) => (typeof p === 'string' ? p : p.textContent)).join('');
}
