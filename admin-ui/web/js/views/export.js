// Export: a CSV of every job and a zip of every output, streamed.

import {h} from '../dom.js';

export default function exportView() {
  const el = h('section', null,
    h('h2', null, 'Export'),
    h('p', null, 'After the workshop, download everything. Both files are produced as they download, so large exports start at once.'),
    h('div', {class: 'exports'},
      h('a', {class: 'export', href: '/api/export/jobs.csv', download: 'jobs.csv', id: 'export-csv'},
        h('strong', null, 'Jobs (CSV)'),
        h('span', null, 'One row per job: participant, status, priority, times, worker, attempts, error.')),
      h('a', {class: 'export', href: '/api/export/outputs.zip', download: 'outputs.zip', id: 'export-zip'},
        h('strong', null, 'Outputs (zip)'),
        h('span', null, 'Every output file, one folder per participant.'))));
  return {id: 'export', title: 'Export', el};
}
