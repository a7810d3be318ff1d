// @ts-check
// Stand-in for the ComfyUI frontend's "scripts/app.js": registerExtension,
// setup, and an extensionManager with a sidebar and toasts, all recorded in
// window.__standin for tests. ?legacy=1 leaves extensionManager out, like an
// old frontend.
import { api } from "./api.js";

const params = new URLSearchParams(window.location.search);

/**
 * What tests read back.
 * @type {{
 *   registered: string[], setupDone: Record<string, boolean>, ready: boolean,
 *   errors: string[], toasts: {severity?: string, summary?: string, detail?: string}[],
 *   sidebarTabs: string[], commands: string[], originalQueuePrompt: unknown
 * }}
 */
const record = {
  registered: [],
  setupDone: {},
  ready: false,
  errors: [],
  toasts: [],
  sidebarTabs: [],
  commands: [],
  originalQueuePrompt: api.queuePrompt,
};
/** @type {any} */ (window).__standin = record;
/** @type {any} */ (window).__standinApi = api;

// Anything that escapes an extension lands here.
window.addEventListener("error", (e) => {
  record.errors.push(`error: ${e.message}`);
});
window.addEventListener("unhandledrejection", (e) => {
  record.errors.push(`unhandled rejection: ${e.reason}`);
});

/** @typedef {{ id: string, title?: string, type?: string, render?: (el: HTMLElement) => void, destroy?: () => void }} Tab */

/** @type {Map<string, Tab>} */
const tabs = new Map();

function sidebarEl() {
  return /** @type {HTMLElement} */ (document.getElementById("standin-sidebar"));
}

/** Shows a tab the way the frontend does: a fresh container, then render(). @param {string} id */
function toggleTab(id) {
  const tab = tabs.get(id);
  const host = sidebarEl();
  const open = host.dataset.open;
  if (open) {
    tabs.get(open)?.destroy?.();
    host.replaceChildren();
    delete host.dataset.open;
    document.querySelector(`[data-tab="${open}"]`)?.classList.remove("active");
  }
  if (!tab || open === id) return;
  const container = document.createElement("div");
  container.className = "standin-tab-content";
  host.replaceChildren(container);
  host.dataset.open = id;
  document.querySelector(`[data-tab="${id}"]`)?.classList.add("active");
  tab.render?.(container);
}

const toastHost = () => /** @type {HTMLElement} */ (document.getElementById("standin-toasts"));

const extensionManager = {
  /** @param {Tab} tab */
  registerSidebarTab(tab) {
    tabs.set(tab.id, tab);
    record.sidebarTabs.push(tab.id);
    const button = document.createElement("button");
    button.className = "standin-tab-button";
    button.dataset.tab = tab.id;
    button.title = tab.title ?? tab.id;
    button.textContent = (tab.title ?? tab.id).slice(0, 1);
    button.addEventListener("click", () => toggleTab(tab.id));
    document.getElementById("standin-toolbar")?.append(button);
  },
  toast: {
    /** @param {{severity?: string, summary?: string, detail?: string, life?: number}} msg */
    add(msg) {
      record.toasts.push({ severity: msg.severity, summary: msg.summary, detail: msg.detail });
      const t = document.createElement("div");
      t.className = "standin-toast";
      const s = document.createElement("strong");
      s.textContent = msg.summary ?? "";
      const d = document.createElement("div");
      d.textContent = msg.detail ?? "";
      t.append(s, d);
      toastHost().append(t);
    },
    remove() {},
    removeAll() {
      toastHost().replaceChildren();
    },
  },
  command: {
    /** @param {string} id */
    execute(id) {
      record.commands.push(id);
      const prefix = "Workspace.ToggleSidebarTab.";
      if (id.startsWith(prefix)) toggleTab(id.slice(prefix.length));
      return Promise.resolve();
    },
  },
};

/** @typedef {{ name: string, init?: (app: unknown) => unknown, setup?: (app: unknown) => unknown }} Extension */

/** @type {Extension[]} */
const extensions = [];

export const app = {
  api,
  /** @type {typeof extensionManager | undefined} */
  extensionManager: params.get("legacy") === "1" ? undefined : extensionManager,

  /** @param {Extension} extension */
  registerExtension(extension) {
    if (!extension?.name) throw new Error("Extensions must have a 'name' property.");
    if (extensions.some((e) => e.name === extension.name)) {
      throw new Error(`Extension named '${extension.name}' already registered.`);
    }
    extensions.push(extension);
    record.registered.push(extension.name);
  },

  /** Runs init then setup of every registered extension, as the frontend does. */
  async start() {
    for (const method of /** @type {const} */ (["init", "setup"])) {
      await Promise.all(
        extensions.map(async (ext) => {
          const fn = ext[method];
          if (!fn) return;
          try {
            await fn.call(ext, app);
            if (method === "setup") record.setupDone[ext.name] = true;
          } catch (e) {
            record.errors.push(`${ext.name}.${method} threw: ${e}`);
          }
        }),
      );
    }
    record.ready = true;
  },
};

export { toggleTab };
