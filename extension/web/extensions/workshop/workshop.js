// @ts-check
/**
 * ComfyUI Workshop: the participant's extension.
 *
 * Shows the participant's seat name, queue position and estimated wait, GPU
 * connection state, their outputs (a sidebar tab) and instructor
 * announcements (toasts). Served by the workshop server at
 * /user/{n}/extensions/workshop/workshop.js and listed in /user/{n}/extensions.
 *
 * Rules this file keeps:
 *  - it never blocks or changes queueing: no patching of app/api methods,
 *    setup() returns at once, all network work runs in the background;
 *  - every callback is wrapped, so a failure here stays here;
 *  - all data goes into the DOM through textContent/attributes, never HTML;
 *  - it only talks to its own participant's routes, relative to the ComfyUI
 *    base: api.fetchApi("/workshop/me") is /user/{n}/api/workshop/me.
 */
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

/**
 * @typedef {{ connected?: number, total?: number }} WorkshopGPUs
 * @typedef {{ paused?: boolean, pending?: number, running?: number,
 *   position?: number | null, eta_seconds?: number | null }} WorkshopQueue
 * @typedef {{ id: string, text: string, created_at?: string }} WorkshopAnnouncement
 * @typedef {{ seat?: number, user_id?: string, name?: string,
 *   gpus?: WorkshopGPUs, queue?: WorkshopQueue,
 *   announcements?: WorkshopAnnouncement[], default_workflow?: string }} WorkshopStatus
 * @typedef {{ job_id?: string, filename?: string, type?: string,
 *   subfolder?: string, url: string, mime?: string, size?: number,
 *   created_at?: string }} WorkshopOutput
 */

const EXTENSION_NAME = "comfy.workshop";
const TAB_ID = "workshop-outputs";
const LOG_PREFIX = "[workshop]";
const OUTPUTS_LIMIT = 100;
const REFRESH_DEBOUNCE_MS = 300;
const POLL_MS = 30_000;
const RETRY_MS = [2_000, 5_000, 10_000, 30_000];
const ANNOUNCEMENT_LIFE_MS = 30_000;
/** the wait for the frontend's own first graph before opening the default workflow */
const FIRST_GRAPH_WAIT_MS = 3_000;
/** GPU and server states, as the badge words them */
const STATE_TEXT = {
  none: "No GPU connected yet \u2014 your jobs wait in the queue",
  reconnecting: "GPUs reconnecting \u2014 your jobs wait in the queue",
  offline: "Workshop server unreachable \u2014 retrying\u2026",
};

/** @param {...unknown} args */
function warn(...args) {
  try {
    console.warn(LOG_PREFIX, ...args);
  } catch {
    // console itself may be missing in odd embeds; nothing to do
  }
}

/**
 * Wraps fn so that nothing it throws escapes into the caller (the frontend).
 * @template {unknown[]} A
 * @param {(...args: A) => unknown} fn
 * @returns {(...args: A) => void}
 */
function safe(fn) {
  return (...args) => {
    try {
      const result = fn(...args);
      if (result instanceof Promise) result.catch((e) => warn(e));
    } catch (e) {
      warn(e);
    }
  };
}

/** @param {unknown} v @returns {v is Record<string, unknown>} */
function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** @param {unknown} v @returns {number | null} */
function num(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** @param {unknown} v @returns {string} */
function str(v) {
  return typeof v === "string" ? v : "";
}

/**
 * Creates an element with a class and optional text (always textContent).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Only same-origin http(s) links are used as given; anything else (say a
 * javascript: URL) is dropped.
 * @param {unknown} raw
 * @returns {string | null}
 */
function safeURL(raw) {
  if (typeof raw !== "string" || raw === "") return null;
  try {
    const u = new URL(raw, window.location.href);
    if (u.protocol !== "http:" && u.protocol !== "https:") return null;
    if (u.origin !== window.location.origin) return null;
    return u.href;
  } catch {
    return null;
  }
}

/**
 * Formats a wait in seconds for people: coarse on purpose, so it does not
 * flicker while it counts down.
 * @param {number} seconds
 */
function formatWait(seconds) {
  if (seconds <= 5) return "any moment now";
  if (seconds < 60) return "< 1 min";
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 60) return `~${minutes} min`;
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return m ? `~${h} h ${m} min` : `~${h} h`;
}

/** @param {number} bytes */
function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  if (bytes < 1024 * 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${(bytes / 1024 / 1024 / 1024).toFixed(1)} GB`;
}

/** @param {string} iso */
function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** @param {unknown} raw @returns {WorkshopAnnouncement | null} */
function toAnnouncement(raw) {
  if (!isObject(raw)) return null;
  const text = str(raw.text);
  if (!text) return null;
  const id = str(raw.id) || `${str(raw.created_at)}:${text}`;
  return { id, text, created_at: str(raw.created_at) };
}

/** @param {unknown} raw @returns {WorkshopOutput | null} */
function toOutput(raw) {
  if (!isObject(raw)) return null;
  const url = safeURL(raw.url);
  if (!url) return null;
  return {
    job_id: str(raw.job_id),
    filename: str(raw.filename) || "output",
    type: str(raw.type),
    subfolder: str(raw.subfolder),
    url,
    mime: str(raw.mime),
    size: num(raw.size) ?? undefined,
    created_at: str(raw.created_at),
  };
}

/** Everything the extension knows; rendering reads only this. */
const state = {
  /** @type {WorkshopStatus | null} */
  me: null,
  /** the last /workshop/me failed and nothing newer arrived since */
  meError: false,
  /** the socket is reconnecting; what we show may be stale */
  stale: false,
  /** performance.now() when me.queue.eta_seconds arrived */
  etaAt: 0,
  /** @type {WorkshopOutput[]} newest first */
  outputs: [],
  outputsLoaded: false,
  outputsError: false,
  /** @type {string | null} cursor for the next page, when the server gives one */
  outputsNext: null,
  /** @type {WorkshopAnnouncement[]} newest first */
  announcements: [],
  /** @type {Set<string>} announcement ids already handled */
  announcementIds: new Set(),
};

/* ------------------------------------------------------------------ DOM -- */

const ui = {
  /** @type {HTMLElement | null} */ badge: null,
  /** @type {HTMLElement | null} */ name: null,
  /** @type {HTMLElement | null} */ seat: null,
  /** @type {HTMLElement | null} */ queue: null,
  /** @type {HTMLElement | null} */ gpu: null,
  /** @type {HTMLElement | null} */ gpuText: null,
  /** @type {HTMLElement | null} */ panel: null,
  /** @type {HTMLElement | null} */ panelSub: null,
  /** @type {HTMLElement | null} */ annList: null,
  /** @type {HTMLElement | null} */ panelStatus: null,
  /** @type {HTMLUListElement | null} */ list: null,
  /** @type {HTMLButtonElement | null} */ more: null,
  /** @type {HTMLElement | null} */ floating: null,
  /** @type {HTMLElement | null} */ toasts: null,
  sidebarTab: false,
};

function loadStyles() {
  if (document.querySelector("link[data-comfy-workshop]")) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = new URL("./workshop.css", import.meta.url).href;
  link.setAttribute("data-comfy-workshop", "");
  document.head.appendChild(link);
}

function buildBadge() {
  const badge = el("div", "cw-badge");
  badge.id = "comfy-workshop-badge";
  badge.setAttribute("role", "status");
  badge.setAttribute("aria-live", "polite");

  const button = el("button", "cw-badge-main");
  button.type = "button";
  button.title = "Show my outputs";
  button.addEventListener("click", safe(openOutputs));

  const who = el("span", "cw-who");
  ui.name = el("span", "cw-name", "Workshop");
  ui.seat = el("span", "cw-seat", "");
  who.append(ui.name, ui.seat);

  ui.queue = el("span", "cw-queue", "Connecting\u2026");

  ui.gpu = el("span", "cw-gpu");
  ui.gpu.dataset.state = "unknown";
  const dot = el("span", "cw-dot");
  dot.setAttribute("aria-hidden", "true");
  ui.gpuText = el("span", "cw-gpu-text", "");
  ui.gpu.append(dot, ui.gpuText);

  button.append(who, ui.queue, ui.gpu);
  badge.append(button);
  ui.badge = badge;
  document.body.appendChild(badge);
}

/**
 * A 16px line icon (lucide's geometry), drawn with DOM calls so it looks
 * the same on every frontend, with or without an icon font.
 * @param {string[]} paths SVG path data
 */
function icon(paths) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [k, v] of Object.entries({ viewBox: "0 0 24 24", width: "16", height: "16", fill: "none",
    stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true" })) {
    svg.setAttribute(k, v);
  }
  for (const d of paths) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

const REFRESH_ICON = ["M21 12a9 9 0 0 0-9-9 9.75 9.75 0 0 0-6.74 2.74L3 8", "M3 3v5h5", "M3 12a9 9 0 0 0 9 9 9.75 9.75 0 0 0 6.74-2.74L21 16", "M16 16h5v5"];

function buildPanel() {
  const panel = el("div", "cw-panel");
  panel.id = "comfy-workshop-outputs";

  // Laid out like the frontend's own sidebar tabs: a 64px toolbar with the
  // title and its actions, then the body.
  const head = el("div", "cw-panel-head");
  const titles = el("div", "cw-panel-titles");
  titles.append(el("h3", "cw-panel-title", "My outputs"));
  head.append(titles);
  ui.panelSub = el("div", "cw-panel-sub", "");
  const refresh = el("button", "cw-icon-button cw-refresh");
  refresh.append(icon(REFRESH_ICON));
  refresh.type = "button";
  refresh.title = "Refresh";
  refresh.setAttribute("aria-label", "Refresh outputs");
  refresh.addEventListener("click", safe(() => {
    void refreshOutputs();
    void refreshMe();
  }));
  head.append(refresh);

  ui.annList = el("ul", "cw-announcements");
  ui.annList.setAttribute("aria-label", "Announcements");
  ui.panelStatus = el("div", "cw-panel-status", "Loading\u2026");
  ui.list = el("ul", "cw-outputs-list");
  ui.list.setAttribute("aria-label", "Outputs, newest first");
  ui.more = el("button", "cw-more", "Load more");
  ui.more.type = "button";
  ui.more.hidden = true;
  ui.more.addEventListener("click", safe(() => loadMoreOutputs()));

  const body = el("div", "cw-panel-body");
  body.append(ui.panelSub, ui.annList, ui.panelStatus, ui.list, ui.more);
  panel.append(head, body);
  ui.panel = panel;
}

/** Without a sidebar API the panel floats over the canvas, opened from the badge. */
function buildFloatingPanel() {
  if (ui.floating || !ui.panel) return;
  const wrap = el("div", "cw-floating");
  wrap.id = "comfy-workshop-floating";
  wrap.hidden = true;
  const close = el("button", "cw-icon-button cw-floating-close", "\u00d7");
  close.type = "button";
  close.title = "Close";
  close.setAttribute("aria-label", "Close outputs");
  close.addEventListener("click", safe(() => {
    if (ui.floating) ui.floating.hidden = true;
  }));
  wrap.append(close, ui.panel);
  ui.floating = wrap;
  document.body.appendChild(wrap);
}

function openOutputs() {
  if (ui.sidebarTab) {
    const command = app.extensionManager?.command;
    if (command && typeof command.execute === "function") {
      Promise.resolve(command.execute(`Workspace.ToggleSidebarTab.${TAB_ID}`)).catch((e) => {
        warn("could not open the outputs tab", e);
      });
      return;
    }
  }
  buildFloatingPanel();
  if (ui.floating) ui.floating.hidden = !ui.floating.hidden;
}

function registerSidebar() {
  const em = app.extensionManager;
  if (!em || typeof em.registerSidebarTab !== "function") return false;
  try {
    em.registerSidebarTab({
      id: TAB_ID,
      icon: "pi pi-images",
      title: "My outputs",
      tooltip: "Workshop: my outputs",
      type: "custom",
      render: safe((/** @type {HTMLElement} */ container) => {
        if (!ui.panel) return;
        ui.panel.classList.add("cw-in-sidebar");
        container.replaceChildren(ui.panel);
        if (!state.outputsLoaded) void refreshOutputs();
      }),
      destroy: safe(() => {
        ui.panel?.remove();
      }),
    });
    return true;
  } catch (e) {
    warn("sidebar tab unavailable", e);
    return false;
  }
}

/* -------------------------------------------------------------- render -- */

function render() {
  renderBadge();
  renderPanelHeader();
}

/**
 * What the badge says about the connection: the workshop server itself,
 * then the GPUs behind it.
 * @returns {"offline" | "none" | "reconnecting" | "ready" | "unknown"}
 */
function connectionState() {
  if (state.meError || state.stale) return "offline";
  const connected = num(state.me?.gpus?.connected);
  const total = num(state.me?.gpus?.total) ?? 0;
  if (connected === null) return "unknown";
  if (connected > 0) return "ready";
  return total > 0 ? "reconnecting" : "none";
}

function queueText() {
  const me = state.me;
  if (!me) return state.meError ? "Workshop status unavailable" : "Connecting\u2026";
  const q = me.queue ?? {};
  const position = num(q.position);
  const running = num(q.running) ?? 0;
  /** @type {string[]} */
  const parts = [];
  if (position !== null && position > 0) {
    let text = `Position ${position}`;
    const eta = num(q.eta_seconds);
    if (eta !== null && !q.paused) {
      const left = Math.max(0, eta - (performance.now() - state.etaAt) / 1000);
      text += ` \u00b7 ${formatWait(left)}`;
    }
    parts.push(text);
  } else if (running > 0) {
    parts.push("Your job is running");
  } else {
    parts.push("No jobs waiting");
  }
  if (q.paused) parts.push("queue paused");
  return parts.join(" \u00b7 ");
}

function queueTitle() {
  const q = state.me?.queue;
  if (!q) return "";
  const pending = num(q.pending) ?? 0;
  const running = num(q.running) ?? 0;
  const bits = [`${pending} of your jobs waiting`, `${running} running`];
  if (q.paused) bits.push("the instructor has paused the queue");
  return bits.join(", ");
}

function renderBadge() {
  if (!ui.badge || !ui.name || !ui.seat || !ui.queue || !ui.gpu || !ui.gpuText) return;
  const me = state.me;
  const seat = num(me?.seat);
  const name = str(me?.name);
  ui.name.textContent = name || (seat !== null ? `Seat ${seat}` : "Workshop");
  ui.seat.textContent = name && seat !== null ? `Seat ${seat}` : "";
  ui.queue.textContent = queueText();
  ui.queue.title = queueTitle();
  ui.queue.dataset.paused = me?.queue?.paused ? "true" : "false";

  const gpus = me?.gpus;
  const connected = num(gpus?.connected);
  const gpuState = connectionState();
  const gpuText = gpuState === "ready" ? `GPUs ready (${connected})` : gpuState === "unknown" ? "" : STATE_TEXT[gpuState];
  ui.gpu.dataset.state = gpuState;
  ui.gpu.hidden = gpuState === "unknown";
  ui.gpuText.textContent = gpuText;
  const total = num(gpus?.total);
  ui.gpu.title = total !== null && connected !== null ? `${connected} of ${total} GPU instances connected` : "";

  ui.badge.dataset.stale = state.stale || (state.meError && !!me) ? "true" : "false";
  ui.badge.dataset.error = state.meError && !me ? "true" : "false";
}

function renderPanelHeader() {
  if (!ui.panelSub) return;
  const me = state.me;
  const seat = num(me?.seat);
  const name = str(me?.name);
  ui.panelSub.textContent = [name, seat !== null ? `Seat ${seat}` : ""].filter(Boolean).join(" \u00b7 ");
}

function renderAnnouncements() {
  if (!ui.annList) return;
  ui.annList.replaceChildren(
    ...state.announcements.slice(0, 5).map((a) => {
      const li = el("li", "cw-announcement");
      li.append(el("span", "cw-announcement-text", a.text));
      const when = a.created_at ? formatTime(a.created_at) : "";
      if (when) li.append(el("span", "cw-announcement-time", when));
      return li;
    }),
  );
  ui.annList.hidden = state.announcements.length === 0;
}

/** @param {WorkshopOutput} o */
function outputItem(o) {
  const li = el("li", "cw-output");
  if (o.job_id) li.dataset.job = o.job_id;
  const name = o.filename || "output";
  const mime = o.mime || "";

  const thumb = el("a", "cw-thumb");
  thumb.href = o.url;
  thumb.target = "_blank";
  thumb.rel = "noopener";
  thumb.title = `Open ${name}`;
  if (mime.startsWith("image/")) {
    const img = el("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = name;
    img.src = o.url;
    thumb.append(img);
  } else if (mime.startsWith("video/")) {
    const video = el("video");
    video.muted = true;
    video.preload = "metadata";
    video.playsInline = true;
    video.src = o.url;
    thumb.append(video);
  } else {
    const ext = name.includes(".") ? name.split(".").pop() || "" : "";
    thumb.append(el("span", "cw-file-kind", ext.slice(0, 4).toUpperCase() || "FILE"));
  }

  const meta = el("div", "cw-meta");
  const link = el("a", "cw-filename", name);
  link.href = o.url;
  link.target = "_blank";
  link.rel = "noopener";
  meta.append(link);
  const sub = [o.created_at ? formatTime(o.created_at) : "", o.size !== undefined ? formatSize(o.size) : ""]
    .filter(Boolean)
    .join(" \u00b7 ");
  if (sub) meta.append(el("span", "cw-output-sub", sub));

  const download = el("a", "cw-icon-button cw-download", "\u2913");
  download.href = o.url;
  download.download = name;
  download.title = `Download ${name}`;
  download.setAttribute("aria-label", `Download ${name}`);

  li.append(thumb, meta, download);
  return li;
}

/** @type {Map<string, HTMLLIElement>} list items by output url, reused so thumbnails do not reload */
const itemCache = new Map();

function renderOutputs() {
  if (!ui.list || !ui.panelStatus || !ui.more) return;
  const items = state.outputs.map((o) => {
    let li = itemCache.get(o.url);
    if (!li) {
      li = outputItem(o);
      itemCache.set(o.url, li);
    }
    return li;
  });
  const keep = new Set(state.outputs.map((o) => o.url));
  for (const url of [...itemCache.keys()]) if (!keep.has(url)) itemCache.delete(url);
  ui.list.replaceChildren(...items);
  let status = "";
  if (state.outputs.length === 0) {
    if (state.outputsError) status = "Could not load your outputs. They are safe; try again in a moment.";
    else if (!state.outputsLoaded) status = "Loading\u2026";
    else status = "No outputs yet. Queue a workflow and your results appear here.";
  } else if (state.outputsError) {
    status = "Could not refresh; showing what was loaded.";
  }
  ui.panelStatus.textContent = status;
  ui.panelStatus.hidden = status === "";
  ui.more.hidden = !state.outputsNext;
}

/* ------------------------------------------------------------- network -- */

/**
 * GETs a workshop route relative to the ComfyUI base and returns its JSON.
 * @param {string} route
 * @returns {Promise<unknown>}
 */
async function getJSON(route) {
  const res = await api.fetchApi(route, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error(`${route}: HTTP ${res.status}`);
  return await res.json();
}

let meInFlight = false;
let meAgain = false;
let retryIndex = 0;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let retryTimer;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let debounceTimer;

async function refreshMe() {
  if (meInFlight) {
    meAgain = true;
    return;
  }
  meInFlight = true;
  clearTimeout(retryTimer);
  try {
    const data = await getJSON("/workshop/me");
    state.meError = false;
    state.stale = false;
    retryIndex = 0;
    applyStatus(data, true);
  } catch (e) {
    warn("status unavailable", e);
    state.meError = true;
    render();
    const delay = RETRY_MS[Math.min(retryIndex, RETRY_MS.length - 1)];
    retryIndex++;
    retryTimer = setTimeout(safe(refreshMe), delay);
  } finally {
    meInFlight = false;
    if (meAgain) {
      meAgain = false;
      void refreshMe();
    }
  }
}

function scheduleRefresh() {
  clearTimeout(debounceTimer);
  debounceTimer = setTimeout(safe(refreshMe), REFRESH_DEBOUNCE_MS);
}

let outputsInFlight = false;

async function refreshOutputs() {
  if (outputsInFlight) return;
  outputsInFlight = true;
  try {
    const data = await getJSON(`/workshop/outputs?limit=${OUTPUTS_LIMIT}`);
    const list = isObject(data) && Array.isArray(data.outputs) ? data.outputs : [];
    /** @type {WorkshopOutput[]} */
    const outputs = [];
    for (const raw of list) {
      const o = toOutput(raw);
      if (o) outputs.push(o);
    }
    state.outputs = outputs;
    state.outputsNext = isObject(data) && typeof data.next === "string" && data.next ? data.next : null;
    state.outputsLoaded = true;
    state.outputsError = false;
  } catch (e) {
    warn("outputs unavailable", e);
    state.outputsError = true;
  } finally {
    outputsInFlight = false;
    renderOutputs();
  }
}

async function loadMoreOutputs() {
  const cursor = state.outputsNext;
  if (!cursor || outputsInFlight) return;
  outputsInFlight = true;
  try {
    const data = await getJSON(
      `/workshop/outputs?limit=${OUTPUTS_LIMIT}&before=${encodeURIComponent(cursor)}`,
    );
    const list = isObject(data) && Array.isArray(data.outputs) ? data.outputs : [];
    const known = new Set(state.outputs.map((o) => o.url));
    for (const raw of list) {
      const o = toOutput(raw);
      if (o && !known.has(o.url)) state.outputs.push(o);
    }
    state.outputsNext = isObject(data) && typeof data.next === "string" && data.next ? data.next : null;
  } catch (e) {
    warn("more outputs unavailable", e);
  } finally {
    outputsInFlight = false;
    renderOutputs();
  }
}

let outputsDebounce = /** @type {ReturnType<typeof setTimeout> | undefined} */ (undefined);

function scheduleOutputsRefresh() {
  clearTimeout(outputsDebounce);
  outputsDebounce = setTimeout(safe(refreshOutputs), 1_000);
}

/* -------------------------------------------------------------- events -- */

/**
 * Applies a status object (from /workshop/me or a workshop_status message).
 * @param {unknown} data
 * @param {boolean} fromSnapshot
 */
function applyStatus(data, fromSnapshot) {
  if (!isObject(data)) return;
  /** @type {WorkshopStatus} */
  const next = { ...(state.me ?? {}) };
  if (num(data.seat) !== null) next.seat = /** @type {number} */ (data.seat);
  if (typeof data.user_id === "string") next.user_id = data.user_id;
  if (typeof data.name === "string") next.name = data.name;
  if (isObject(data.gpus)) next.gpus = /** @type {WorkshopGPUs} */ (data.gpus);
  if (isObject(data.queue)) {
    next.queue = /** @type {WorkshopQueue} */ (data.queue);
    state.etaAt = performance.now();
  }
  state.me = next;
  if (Array.isArray(data.announcements)) {
    receiveAnnouncements(data.announcements, fromSnapshot);
  }
  if (fromSnapshot && typeof data.default_workflow === "string" && data.default_workflow) {
    void openDefault(data.default_workflow);
  }
  render();
}

/* ----------------------------------------------------- default workflow -- */

/** @type {(() => void) | null} */
let firstGraphSeen = null;
/** @type {string | null} the default workflow being opened */
let defaultOpening = null;
const firstGraph = new Promise((resolve) => {
  firstGraphSeen = () => resolve(undefined);
});

/**
 * Opens the workshop workflow the instructor marked, once per browser and
 * mark: on a participant's first visit it is what they see. It opens as
 * the workshop's file (workflows/workshop/NAME), so saving over it asks
 * for a name of their own.
 * @param {string} name file name in the workshop folder
 */
async function openDefault(name) {
  const key = `Comfy.Workshop.DefaultOpened:${seenKey()}`;
  try {
    if (window.localStorage.getItem(key) === name) return;
  } catch {
    return; // no storage: never replace what the participant has open
  }
  // The page's first status snapshot and its socket's both name it: open
  // it once.
  if (defaultOpening === name) return;
  defaultOpening = name;
  // Wait for the frontend's own first graph (restored or default), or it
  // would load over ours.
  await Promise.race([firstGraph, new Promise((r) => setTimeout(r, FIRST_GRAPH_WAIT_MS))]);
  const path = `workflows/workshop/${name}`;
  const res = await api.fetchApi(`/userdata/${encodeURIComponent(path)}`, { cache: "no-store" });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  const graph = await res.json();
  await app.loadGraphData(graph, true, true, `workshop/${name.replace(/\.json$/i, "")}`);
  try {
    window.localStorage.setItem(key, name);
  } catch {
    // opened; it may open again on the next visit
  }
}

const seenKey = () => {
  let base = "";
  try {
    base = api.apiURL("");
  } catch {
    // keep the default key
  }
  return `Comfy.Workshop.SeenAnnouncements:${base}`;
};

/** @returns {Set<string>} */
function loadSeen() {
  try {
    const raw = window.localStorage.getItem(seenKey());
    const list = raw ? JSON.parse(raw) : [];
    return new Set(Array.isArray(list) ? list.filter((x) => typeof x === "string") : []);
  } catch {
    return new Set();
  }
}

/** @param {Set<string>} seen */
function saveSeen(seen) {
  try {
    window.localStorage.setItem(seenKey(), JSON.stringify([...seen].slice(-200)));
  } catch {
    // private mode or full storage: toasts may repeat after a reload, that is all
  }
}

/**
 * @param {unknown[]} list
 * @param {boolean} fromSnapshot on load, only announcements this browser has
 *   not shown before become toasts (at most a few); live ones always do.
 */
function receiveAnnouncements(list, fromSnapshot) {
  /** @type {WorkshopAnnouncement[]} */
  const fresh = [];
  for (const raw of list) {
    const a = toAnnouncement(raw);
    if (!a || state.announcementIds.has(a.id)) continue;
    state.announcementIds.add(a.id);
    fresh.push(a);
  }
  if (fresh.length === 0) return;
  state.announcements = [...fresh, ...state.announcements]
    .sort((a, b) => str(b.created_at).localeCompare(str(a.created_at)))
    .slice(0, 50);
  renderAnnouncements();

  const seen = loadSeen();
  if (fromSnapshot) {
    // On load, only what this browser has not shown, and at most two
    // toasts: the newest, and a note pointing at the rest in the panel.
    const unseen = fresh.filter((a) => !seen.has(a.id)).sort((a, b) => str(b.created_at).localeCompare(str(a.created_at)));
    if (unseen.length > 0) notify(unseen[0]);
    if (unseen.length > 1) {
      const more = unseen.length - 1;
      notify({ id: "", text: `${more} earlier announcement${more > 1 ? "s" : ""} in the My outputs panel` }, "Workshop");
    }
  } else {
    for (const a of fresh) notify(a);
  }
  for (const a of fresh) seen.add(a.id);
  saveSeen(seen);
}

/**
 * @param {WorkshopAnnouncement} a
 * @param {string} [title]
 */
function notify(a, title = "Workshop announcement") {
  const toast = app.extensionManager?.toast;
  if (toast && typeof toast.add === "function") {
    try {
      toast.add({
        severity: "info",
        summary: title,
        detail: a.text,
        life: ANNOUNCEMENT_LIFE_MS,
      });
      return;
    } catch (e) {
      warn("toast failed", e);
    }
  }
  fallbackToast(a.text, title);
}

/**
 * A minimal toast of our own for frontends without the toast API.
 * @param {string} text
 * @param {string} title
 */
function fallbackToast(text, title) {
  if (!ui.toasts) {
    ui.toasts = el("div", "cw-toasts");
    ui.toasts.setAttribute("aria-live", "assertive");
    document.body.appendChild(ui.toasts);
  }
  const t = el("div", "cw-toast");
  t.setAttribute("role", "alert");
  t.append(el("div", "cw-toast-title", title), el("div", "cw-toast-text", text));
  const close = el("button", "cw-icon-button cw-toast-close", "\u00d7");
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => t.remove());
  t.append(close);
  ui.toasts.prepend(t);
  setTimeout(() => t.remove(), ANNOUNCEMENT_LIFE_MS);
}

/** @param {unknown} data */
function receiveOutput(data) {
  const o = toOutput(data);
  if (!o) return;
  state.outputs = [o, ...state.outputs.filter((x) => x.url !== o.url)];
  renderOutputs();
}

/**
 * Listens for a custom socket message type. The frontend dispatches unknown
 * message types only to types some listener registered with addEventListener.
 * @param {string} type
 * @param {(detail: unknown) => void} fn
 */
function onMessage(type, fn) {
  const handler = safe((/** @type {Event} */ ev) => fn(/** @type {CustomEvent} */ (ev).detail));
  /** @type {EventTarget} */ (api).addEventListener(type, handler);
}

let listening = false;

function listen() {
  if (listening) return;
  listening = true;
  onMessage("workshop_status", (d) => {
    state.stale = false;
    applyStatus(d, false);
  });
  onMessage("workshop_announcement", (d) => receiveAnnouncements([d], false));
  onMessage("workshop_output", receiveOutput);

  // ComfyUI's own events: the queue changed or a job finished, so our
  // position moved; refetch (debounced, one request for a burst).
  api.addEventListener("status", safe((ev) => {
    if (ev.detail) scheduleRefresh();
  }));
  api.addEventListener("execution_success", safe(() => {
    scheduleRefresh();
    if (state.outputsLoaded) scheduleOutputsRefresh();
  }));
  api.addEventListener("reconnecting", safe(() => {
    state.stale = true;
    renderBadge();
  }));
  api.addEventListener("reconnected", safe(() => {
    void refreshMe();
    if (state.outputsLoaded) void refreshOutputs();
  }));

  // A slow safety net for missed messages; skipped while the tab is hidden.
  setInterval(safe(() => {
    if (!document.hidden) void refreshMe();
  }), POLL_MS);
  // Count the wait down between updates.
  setInterval(safe(() => {
    if (num(state.me?.queue?.eta_seconds) !== null && !document.hidden) renderBadge();
  }), 5_000);
  document.addEventListener("visibilitychange", safe(() => {
    if (!document.hidden) scheduleRefresh();
  }));
}

function start() {
  const w = /** @type {Window & { __comfyWorkshopStarted?: boolean }} */ (window);
  if (w.__comfyWorkshopStarted) return;
  w.__comfyWorkshopStarted = true;

  loadStyles();
  buildBadge();
  buildPanel();
  ui.sidebarTab = registerSidebar();
  if (!ui.sidebarTab) buildFloatingPanel();
  render();
  renderAnnouncements();
  renderOutputs();
  listen();
  void refreshMe();
  void refreshOutputs();
}

try {
  app.registerExtension({
    name: EXTENSION_NAME,
    afterConfigureGraph() {
      firstGraphSeen?.();
    },
    // Listen early, so workshop messages that arrive before setup are not
    // dropped as unknown types; only state changes until the UI exists.
    init() {
      try {
        listen();
      } catch (e) {
        warn("init failed", e);
      }
    },
    // setup returns at once: the frontend awaits it before it finishes
    // loading, and the workshop must never slow the UI or queueing down.
    setup() {
      try {
        start();
      } catch (e) {
        warn("setup failed", e);
      }
    },
  });
} catch (e) {
  warn("could not register", e);
}
