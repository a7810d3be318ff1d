// The printable sheet of join cards: one per seat, with its QR code, the
// workshop's title, Wi-Fi and instructions (kept on the server, typed once).

import {h, replace, setText, safeUrl} from './dom.js';
import * as api from './api.js';

const $ = (s) => document.querySelector(s);
const FIELDS = {title: '#sheet-title', wifi_name: '#sheet-wifi', wifi_password: '#sheet-pass', instructions: '#sheet-help'};
let seats = [];
let sheet = {title: '', wifi_name: '', wifi_password: '', instructions: ''};

/** The link split where a line may break: after the slashes of the address, never inside the code. */
function urlParts(url, code) {
  const at = code ? url.lastIndexOf(code) : -1;
  const base = at > 0 ? url.slice(0, at) : url;
  const parts = [];
  for (const piece of base.split(/(?<=\/)/)) parts.push(piece, h('wbr'));
  if (at > 0) parts.push(h('span', {class: 'code-part'}, url.slice(at)));
  return parts;
}

function wifiLine() {
  if (!sheet.wifi_name) return null;
  return h('p', {class: 'wifi'}, 'Wi-Fi ', h('strong', null, sheet.wifi_name),
    sheet.wifi_password ? [' · password ', h('strong', {class: 'pass'}, sheet.wifi_password)] : '');
}

function render() {
  const title = sheet.title || document.body.dataset.title;
  const skip = $('#skip-disabled').checked;
  const list = seats.filter((s) => !(skip && s.disabled)).sort((a, b) => a.seat - b.seat);
  replace($('#sheet'), list.map((s) => {
    const url = safeUrl(s.join_url, {external: true}) || s.join_url || '';
    return h('article', {class: 'card', dataset: {seat: s.seat}},
      h('p', {class: 'title'}, title),
      h('p', {class: 'seat'}, `Seat ${s.seat}`),
      // Always there, empty or not, so every card's code sits at the same height.
      h('p', {class: 'name'}, s.name || '\u00a0'),
      h('img', {class: 'qr', src: `/api/seats/${encodeURIComponent(s.seat)}/qr.png`, alt: `QR code for seat ${s.seat}`, width: '180', height: '180'}),
      h('p', {class: 'code'}, 'Code ', h('strong', null, s.code || '')),
      h('p', {class: 'url'}, urlParts(url, s.code)),
      wifiLine(),
      sheet.instructions ? h('p', {class: 'help'}, sheet.instructions) : null);
  }));
  // Once on the sheet: the Wi-Fi as a code phones join with.
  const intro = $('#intro');
  intro.hidden = !sheet.wifi_name && !sheet.instructions;
  replace(intro,
    h('h2', null, title),
    sheet.instructions ? h('p', {class: 'help'}, sheet.instructions) : null,
    sheet.wifi_name ? h('figure', {class: 'wifi-qr'},
      h('img', {src: `/api/sheet/wifi.png?v=${encodeURIComponent(sheet.wifi_name + '\u0000' + sheet.wifi_password)}`,
        alt: `QR code to join the Wi-Fi ${sheet.wifi_name}`, width: '140', height: '140'}),
      h('figcaption', null, wifiLine())) : null);
  setText($('#status'), `${list.length} card${list.length === 1 ? '' : 's'}`);
  document.body.dataset.ready = '1';
}

function fill() {
  for (const [k, sel] of Object.entries(FIELDS)) $(sel).value = sheet[k] || '';
}

async function save(e) {
  e.preventDefault();
  const body = {};
  for (const [k, sel] of Object.entries(FIELDS)) body[k] = $(sel).value;
  const btn = $('#sheet-save');
  btn.disabled = true;
  setText($('#sheet-status'), 'Saving…');
  try {
    sheet = await api.put('/api/sheet', body);
    fill();
    render();
    setText($('#sheet-status'), 'Saved: every card has it.');
  } catch (err) {
    setText($('#sheet-status'), `Not saved: ${err.message}`);
  } finally {
    btn.disabled = false;
  }
}

async function boot() {
  $('#print').addEventListener('click', () => window.print());
  $('#skip-disabled').addEventListener('change', render);
  $('#sheet-form').addEventListener('submit', save);
  api.onUnauthorized(() => {});
  try {
    await api.refreshSession();
    const [r, sh] = await Promise.all([api.get('/api/seats?live=0'), api.get('/api/sheet')]);
    seats = (r && r.seats) || [];
    $('#join-warning').hidden = !(r && r.join_warning);
    setText($('#join-warning'), (r && r.join_warning) || '');
    sheet = {...sheet, ...(sh || {})};
    fill();
    render();
  } catch (e) {
    replace($('#status'), e.status === 401
      ? ['Not signed in. ', h('a', {href: '/admin'}, 'Sign in'), ', then reload this page.']
      : `Could not load the seats: ${e.message}`);
  }
}

boot();
