// Small DOM helpers. Data only ever reaches the page as text nodes and
// attribute values: nothing here parses HTML.

/**
 * h("button", {class: "x", onclick: fn, "aria-label": "..."}, "text", child)
 * Attributes: class, dataset (object), style (object, CSSOM), on* (listeners),
 * boolean true/false (present/absent), anything else via setAttribute.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** svg("rect", {...}) makes an SVG element. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked' || k === 'selected' || (k === 'disabled' && 'disabled' in el)) el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace all children of el. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Set text only when it changed (cheap repeated updates). */
export function setText(el, text) {
  text = text == null ? '' : String(text);
  if (el.textContent !== text) el.textContent = text;
}

export function setAttr(el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
    return;
  }
  value = value === true ? '' : String(value);
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/**
 * Keyed update of a container's children: items in order, one element per
 * key. create(item) makes an element, update(el, item) refreshes it. Existing
 * elements are kept (focus, images and state survive) and only moved when out
 * of place.
 */
export function reconcile(container, items, key, create, update) {
  if (!container.firstChild) {
    // A first render builds off the document and inserts once.
    const frag = document.createDocumentFragment();
    const next = new Map();
    for (const item of items) {
      const k = key(item);
      const el = create(item);
      el.__key = k;
      update(el, item);
      next.set(k, el);
      frag.append(el);
    }
    container.append(frag);
    container.__keyed = next;
    return;
  }
  const old = container.__keyed || new Map();
  const next = new Map();
  let ref = container.firstChild;
  for (const item of items) {
    const k = key(item);
    let el = old.get(k);
    if (el) {
      old.delete(k);
    } else {
      el = create(item);
    }
    el.__key = k;
    update(el, item);
    next.set(k, el);
    if (el !== ref) container.insertBefore(el, ref);
    else ref = ref.nextSibling;
  }
  // Everything after the placed items is stale: old items and placeholders.
  while (ref) {
    const n = ref.nextSibling;
    ref.remove();
    ref = n;
  }
  container.__keyed = next;
}

/** Only same-origin paths, and http(s) links when allowed; else "". */
export function safeUrl(u, {external = false, data = false} = {}) {
  if (typeof u !== 'string' || u === '') return '';
  if (data && /^data:image\/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=]+$/.test(u)) return u;
  try {
    const url = new URL(u, location.href);
    if (url.origin === location.origin && (url.protocol === 'http:' || url.protocol === 'https:')) return url.href;
    if (external && (url.protocol === 'http:' || url.protocol === 'https:')) return url.href;
  } catch { /* fallthrough */ }
  return '';
}

// ---- formatting ----

export function fmtDuration(sec) {
  if (sec == null || !isFinite(sec)) return '—';
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return `${sec} s`;
  const m = Math.floor(sec / 60), s = sec % 60;
  if (m < 60) return s && m < 10 ? `${m} min ${s} s` : `${m} min`;
  const hh = Math.floor(m / 60), mm = m % 60;
  return `${hh} h ${mm} min`;
}

export function fmtAge(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!isFinite(t)) return '—';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function fmtEta(sec, paused) {
  if (paused) return 'paused';
  if (sec == null || !isFinite(sec)) return '—';
  if (sec < 1) return 'next';
  if (sec < 60) return '< 1 min';
  return `~${Math.round(sec / 60)} min`;
}

export function fmtTime(iso) {
  const t = new Date(iso);
  if (isNaN(t)) return '—';
  return t.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
}

export function fmtBytes(n) {
  if (n == null || !isFinite(n)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

export function fmtMiB(n) {
  if (n == null || !isFinite(n) || n <= 0) return '—';
  return n >= 1024 ? `${(n / 1024).toFixed(1)} GiB` : `${Math.round(n)} MiB`;
}

/** Seat number from "user007", or null. */
export function seatOf(userId) {
  const m = /^user(\d+)$/.exec(userId || '');
  return m ? Number(m[1]) : null;
}

/** Run fn once after ms of quiet, but at least every maxMs while busy. */
export function debounce(fn, ms, maxMs = ms * 4) {
  let timer = 0, first = 0;
  const run = () => { timer = 0; first = 0; fn(); };
  const d = () => {
    const now = Date.now();
    if (!first) first = now;
    clearTimeout(timer);
    timer = setTimeout(run, Math.max(0, Math.min(ms, first + maxMs - now)));
  };
  d.cancel = () => { clearTimeout(timer); timer = 0; first = 0; };
  d.flush = () => { if (timer) { clearTimeout(timer); run(); } };
  return d;
}

/** Coalesce calls to fn into one per animation frame (or 16 ms when hidden). */
export function perFrame(fn) {
  let queued = false;
  const run = () => { queued = false; fn(); };
  return () => {
    if (queued) return;
    queued = true;
    if (document.visibilityState === 'visible') requestAnimationFrame(run);
    else setTimeout(run, 16);
  };
}

/**
 * A button that asks once more before acting: the first press arms it
 * ("Sure? ..."), a second press within 4 s acts.
 */
export function confirmButton(label, armedLabel, action, attrs = {}) {
  let timer = 0;
  const btn = h('button', {type: 'button', ...attrs}, label);
  btn.addEventListener('click', () => {
    if (btn.dataset.armed === '1') {
      clearTimeout(timer);
      btn.dataset.armed = '';
      btn.textContent = label;
      action();
      return;
    }
    btn.dataset.armed = '1';
    btn.textContent = armedLabel;
    timer = setTimeout(() => { btn.dataset.armed = ''; btn.textContent = label; }, 4000);
  });
  return btn;
}
