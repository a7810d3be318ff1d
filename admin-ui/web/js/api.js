// The admin API client: same-origin fetch with the session cookie, the CSRF
// token on every state-changing request, errors as ApiError.

let csrf = '';
let unauthorized = () => {};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

export function setCsrf(token) { csrf = token || ''; }
export function hasSession() { return csrf !== ''; }

/** fn runs when any request answers 401 (the session is gone). */
export function onUnauthorized(fn) { unauthorized = fn; }

const unsafe = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

async function errorOf(res) {
  let code = '', message = '';
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || '';
      message = body.error.message || '';
    }
  } catch { /* not JSON */ }
  if (!message) {
    message = res.status === 429 ? 'Too many requests: wait a moment and try again'
      : res.status >= 500 ? `The server failed (HTTP ${res.status})`
        : `HTTP ${res.status}`;
  }
  return new ApiError(res.status, code, message);
}

/**
 * request("PATCH", "/api/jobs/x/priority", {priority: 1})
 * body: an object (sent as JSON), a string (sent as is, JSON content type),
 * or undefined. Answers the decoded JSON, or null for an empty answer.
 */
export async function request(method, path, body, {retried = false, auth = true, keepalive = false} = {}) {
  const headers = {Accept: 'application/json'};
  // keepalive: the request outlives the page (sent as it closes).
  const opts = {method, headers, credentials: 'same-origin', cache: 'no-store', keepalive};
  if (unsafe.has(method) && csrf) headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    opts.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, 'network', 'The server cannot be reached');
  }
  if (res.status === 401 && auth) {
    csrf = '';
    unauthorized();
    throw await errorOf(res);
  }
  if (res.status === 403 && unsafe.has(method) && !retried && auth) {
    // Maybe the CSRF token was rotated (another tab logged in): fetch the
    // current one and try once more.
    const old = csrf;
    if (await refreshSession() && csrf !== old) return request(method, path, body, {retried: true});
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(res.status, 'bad_json', 'The server sent something that is not JSON');
  }
}

/** GET /admin/session: true (and the token set) when signed in. */
export async function refreshSession() {
  try {
    const s = await request('GET', '/admin/session', undefined, {auth: false});
    setCsrf(s && s.csrf);
    return !!(s && s.csrf);
  } catch (e) {
    if (e.status === 401) { setCsrf(''); return false; }
    throw e;
  }
}

export async function login(secret, name) {
  const s = await request('POST', '/admin/login', name ? {secret, name} : {secret}, {auth: false});
  setCsrf(s && s.csrf);
  return !!csrf;
}

export async function logout() {
  try {
    await request('POST', '/admin/logout', undefined, {auth: false});
  } finally {
    setCsrf('');
  }
}

export const get = (p) => request('GET', p);
export const post = (p, b) => request('POST', p, b);
export const put = (p, b) => request('PUT', p, b);
export const patch = (p, b) => request('PATCH', p, b);
export const del = (p) => request('DELETE', p);

/** Path segment escaping for ids and names. */
export const seg = (s) => encodeURIComponent(String(s));
