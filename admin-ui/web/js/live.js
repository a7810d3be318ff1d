// The admin WebSocket: one connection, reconnect with exponential backoff and
// full jitter, and a status callback for the banner.

const MIN_DELAY = 500, MAX_DELAY = 15000;

export class Live {
  /**
   * onMessage(msg) for every event; onState({state, attempt, retryAt}) where
   * state is "connecting" | "open" | "closed" | "waiting"; onOpen(reconnect)
   * after each successful open; beforeRetry() may answer false to stop
   * (signed out).
   */
  constructor({url = defaultUrl(), onMessage, onState = () => {}, onOpen = () => {}, beforeRetry = async () => true}) {
    Object.assign(this, {url, onMessage, onState, onOpen, beforeRetry});
    this.ws = null;
    this.attempt = 0;
    this.timer = 0;
    this.stopped = true;
    this.everOpened = false;
    this.parseMs = 0; // time spent decoding messages, for the benchmark
    this.onOnline = () => { if (!this.ws) this.connectNow(); };
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener('online', this.onOnline);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close();
    }
  }

  connectNow() {
    clearTimeout(this.timer);
    this.attempt = 0;
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    this.onState({state: 'connecting', attempt: this.attempt});
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      const reconnect = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.onState({state: 'open'});
      this.onOpen(reconnect);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      const t0 = performance.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this.parseMs += performance.now() - t0;
      if (msg && typeof msg.type === 'string') this.onMessage(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.retry();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  async retry() {
    if (this.stopped) return;
    this.onState({state: 'closed', attempt: this.attempt});
    let ok = true;
    try { ok = await this.beforeRetry(); } catch { /* the server is down: keep trying */ }
    if (!ok || this.stopped) return;
    const cap = Math.min(MAX_DELAY, MIN_DELAY * 2 ** this.attempt);
    const delay = Math.max(MIN_DELAY / 2, Math.random() * cap);
    this.attempt++;
    const retryAt = Date.now() + delay;
    this.onState({state: 'waiting', attempt: this.attempt, retryAt});
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

export function defaultUrl() {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
}
