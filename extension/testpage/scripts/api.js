// @ts-check
// Stand-in for the ComfyUI frontend's "scripts/api.js": just the parts of
// `api` the workshop extension uses, behaving as the real ComfyApi does.
//
// The participant's ComfyUI base comes from the page's query (?base=/user/7/),
// as the real frontend derives it from the page path. With ?ws=1 it also opens
// the real socket at {base}ws and dispatches its messages the way the
// frontend does; without it, tests feed messages through api.receive().

const params = new URLSearchParams(window.location.search);

/** @param {string | null} raw */
function baseFrom(raw) {
  let base = raw || "/user/1/";
  // same-origin paths only
  if (!base.startsWith("/") || base.startsWith("//")) base = "/user/1/";
  return base.replace(/\/+$/, "");
}

/** Message types the frontend dispatches itself; others only when registered. */
const BUILTIN = new Set([
  "execution_start",
  "execution_error",
  "execution_interrupted",
  "execution_cached",
  "execution_success",
  "progress",
  "progress_state",
  "executed",
  "graphChanged",
  "promptQueued",
  "logs",
  "b_preview",
  "notification",
  "asset_download",
]);

class StandInApi extends EventTarget {
  constructor() {
    super();
    this.api_host = window.location.host;
    this.api_base = baseFrom(params.get("base"));
    this.user = "";
    /** @type {string | undefined} */
    this.clientId = undefined;
    /** @type {WebSocket | null} */
    this.socket = null;
    /** @type {Set<string>} */
    this.registered = new Set();
    /** @type {string[]} message types dropped as unknown */
    this.unknown = [];
    /** @type {string[]} routes fetched through fetchApi */
    this.fetched = [];
  }

  /** @param {string} route */
  apiURL(route) {
    return this.api_base + "/api" + route;
  }

  /** @param {string} route */
  fileURL(route) {
    return this.api_base + route;
  }

  /** @param {string} route @param {RequestInit} [options] */
  fetchApi(route, options) {
    this.fetched.push(route);
    const headers = new Headers(options?.headers ?? {});
    headers.set("Comfy-User", this.user);
    return fetch(this.apiURL(route), { cache: "no-cache", ...options, headers });
  }

  /**
   * Like the real one: registering a listener is what makes the frontend
   * dispatch a custom message type at all.
   * @param {string} type
   * @param {EventListenerOrEventListenerObject | null} callback
   * @param {boolean | AddEventListenerOptions} [options]
   */
  addEventListener(type, callback, options) {
    super.addEventListener(type, callback, options);
    this.registered.add(type);
  }

  /** @param {string} type @param {unknown} [detail] */
  dispatchCustomEvent(type, detail) {
    const event = detail === undefined ? new CustomEvent(type) : new CustomEvent(type, { detail });
    return super.dispatchEvent(event);
  }

  /**
   * Handles one socket message ({type, data}) as the frontend's socket
   * handler does. Listener errors surface as window errors, as they would.
   * @param {{type: string, data?: any}} msg
   */
  receive(msg) {
    switch (msg.type) {
      case "status":
        if (msg.data?.sid) this.clientId = msg.data.sid;
        this.dispatchCustomEvent("status", msg.data?.status ?? null);
        break;
      case "executing":
        this.dispatchCustomEvent("executing", msg.data?.display_node || msg.data?.node);
        break;
      case "feature_flags":
        break;
      default:
        if (BUILTIN.has(msg.type) || this.registered.has(msg.type)) {
          this.dispatchCustomEvent(msg.type, msg.data);
        } else {
          this.unknown.push(msg.type);
        }
    }
  }

  /** Simulates a dropped and re-established socket. */
  reconnect() {
    this.dispatchCustomEvent("status", null);
    this.dispatchCustomEvent("reconnecting");
    setTimeout(() => this.dispatchCustomEvent("reconnected"), 50);
  }

  /**
   * The frontend's queuePrompt, reduced: POST /prompt. The extension must
   * leave it alone; tests call it to show queueing still works.
   * @param {number} number
   * @param {{output: unknown, workflow: unknown}} data
   */
  async queuePrompt(number, data) {
    const res = await this.fetchApi("/prompt", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        client_id: this.clientId ?? "",
        prompt: data.output,
        extra_data: { extra_pnginfo: { workflow: data.workflow } },
        ...(number === -1 ? { front: true } : {}),
      }),
    });
    if (res.status !== 200) throw new Error(`queue failed: ${res.status}`);
    return await res.json();
  }

  /** Opens the real socket, reconnecting like the frontend. @param {boolean} [isReconnect] */
  connect(isReconnect) {
    if (this.socket) return;
    const proto = window.location.protocol === "https:" ? "wss" : "ws";
    const query = this.clientId ? `?clientId=${encodeURIComponent(this.clientId)}` : "";
    const socket = new WebSocket(`${proto}://${this.api_host}${this.api_base}/ws${query}`);
    this.socket = socket;
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      socket.send(JSON.stringify({ type: "feature_flags", data: { supports_preview_metadata: false } }));
      if (isReconnect) this.dispatchCustomEvent("reconnected");
    });
    socket.addEventListener("error", () => socket.close());
    socket.addEventListener("close", () => {
      setTimeout(() => {
        this.socket = null;
        this.connect(true);
      }, 300);
      if (opened) {
        this.dispatchCustomEvent("status", null);
        this.dispatchCustomEvent("reconnecting");
      }
    });
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return; // binary previews: not used here
      try {
        this.receive(JSON.parse(event.data));
      } catch (e) {
        console.warn("Unhandled message:", event.data, e);
      }
    });
  }
}

export const api = new StandInApi();

if (params.get("ws") === "1") api.connect();
