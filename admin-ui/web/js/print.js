// The printable sheet of join cards: one per seat, with its QR code.

import {h, replace, setText, safeUrl} from './dom.js';
import * as api from './api.js';

const $ = (s) => document.querySelector(s);
let seats = [];

function render() {
  const skip = $('#skip-disabled').checked;
  const list = seats.filter((s) => !(skip && s.disabled)).sort((a, b) => a.seat - b.seat);
  replace($('#sheet'), list.map((s) => {
    const url = safeUrl(s.join_url, {external: true});
    return h('article', {class: 'card', dataset: {seat: s.seat}},
      h('p', {class: 'seat'}, `Seat ${s.seat}`),
      s.name ? h('p', {class: 'name'}, s.name) : null,
      h('img', {class: 'qr', src: `/api/seats/${encodeURIComponent(s.seat)}/qr.png`, alt: `QR code for seat ${s.seat}`, width: '180', height: '180'}),
      h('p', {class: 'url'}, url || s.join_url || ''),
      h('p', {class: 'code'}, 'Code ', h('strong', null, s.code || '')));
  }));
  setText($('#status'), `${list.length} card${list.length === 1 ? '' : 's'}`);
  document.body.dataset.ready = '1';
}

async function boot() {
  $('#print').addEventListener('click', () => window.print());
  $('#skip-disabled').addEventListener('change', render);
  api.onUnauthorized(() => {});
  try {
    const r = await api.get('/api/seats');
    seats = (r && r.seats) || [];
    render();
  } catch (e) {
    replace($('#status'), e.status === 401
      ? ['Not signed in. ', h('a', {href: '/admin'}, 'Sign in'), ', then reload this page.']
      : `Could not load the seats: ${e.message}`);
  }
}

boot();
