// Drives a ComfyUI server with @saintno/comfyui-sdk (its ComfyApi,
// PromptBuilder and CallWrapper), a second ComfyUI API client this project
// did not write. Run as
//   node sdk.mjs http://127.0.0.1:PORT                          (ComfyUI or the simulator)
//   node sdk.mjs http://127.0.0.1:PORT/user/1/ 'workshop_session=...'
// (a participant's ComfyUI on the workshop server, signed in by cookie).
// It runs a graph that needs no model weights twice (the second time fully
// cached, so it may finish before the post is answered), fetches every
// output through /view, and sends a broken graph. It prints one JSON line
// with what it saw and exits non-zero on failure.
import { ComfyApi, CallWrapper, PromptBuilder } from "@saintno/comfyui-sdk";
import WebSocket from "ws";

// The SDK reconnects with the global WebSocket, which Node.js has only
// since version 22.
globalThis.WebSocket ??= WebSocket;

const base = process.argv[2].replace(/\/$/, "");
const cookie = process.argv[3] || "";
const headers = cookie ? { Cookie: cookie } : {};
const api = new ComfyApi(base, "saintno-sdk", {
  forceWs: true,
  credentials: cookie ? { type: "custom", headers } : undefined,
});

const seen = { messages: {}, runs: [], images: [], promptIds: [], errorStatus: 0, errorType: "" };
for (const type of ["status", "execution_start", "execution_cached", "executing", "executed",
  "execution_success", "execution_error", "execution_interrupted", "disconnected", "reconnected"]) {
  api.on(type, (ev) => {
    seen.messages[type] = (seen.messages[type] || 0) + 1;
    if (ev.detail?.prompt_id && !seen.promptIds.includes(ev.detail.prompt_id)) seen.promptIds.push(ev.detail.prompt_id);
  });
}

function finish(code, msg) {
  if (msg) console.error(msg);
  console.log(JSON.stringify(seen));
  api.destroy();
  process.exit(code);
}
const timer = setTimeout(() => finish(1, "timed out"), 60000);

try {
  // The socket is up once it has said its first status.
  const connected = new Promise((resolve) => api.on("status", resolve));
  api.init(5, 500);
  await api.waitForReady();
  await connected;

  const graph = {
    "1": { class_type: "EmptyImage", inputs: { width: 32, height: 32, batch_size: 1, color: 0 } },
    "2": { class_type: "SaveImage", inputs: { images: ["1", 0], filename_prefix: "sdk" } },
    "3": { class_type: "PreviewImage", inputs: { images: ["1", 0] } },
  };
  // A new colour each time, so the first run executes and the second is cached.
  const color = Date.now() % 0xffffff;
  for (let i = 0; i < 2; i++) {
    const builder = new PromptBuilder(graph, ["color"], ["saved", "preview"])
      .setInputNode("color", "1.inputs.color")
      .setOutputNode("saved", "2")
      .setOutputNode("preview", "3")
      .input("color", color);
    let failure = null;
    let id = "";
    const out = await new CallWrapper(api, builder)
      .onPending((promptId) => { id = promptId; })
      .onFailed((err) => { failure = String(err?.message ?? err) + " " + JSON.stringify(err?.cause ?? ""); })
      .run();
    if (!out) finish(1, `run ${i + 1} failed: ${failure}`);
    seen.runs.push({ promptId: id, keys: Object.keys(out).filter((k) => k !== "_raw").sort() });
    for (const key of ["saved", "preview"]) {
      for (const img of out[key]?.images ?? []) {
        const res = await fetch(api.getPathImage(img), { headers });
        const bytes = new Uint8Array(await res.arrayBuffer());
        const png = bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
        seen.images.push({ key, type: img.type, status: res.status, png });
      }
    }
  }

  // A broken graph: SaveImage without its images.
  try {
    await api.queuePrompt(null, { "2": { class_type: "SaveImage", inputs: { filename_prefix: "x" } } });
    finish(1, "broken graph was accepted");
  } catch (err) {
    const res = err instanceof Response ? err : err?.response; // the SDK throws the response
    seen.errorStatus = res?.status ?? 0;
    const body = res ? await res.json() : {};
    seen.errorType = body.error?.type ?? "";
  }
} catch (err) {
  finish(1, "client error: " + (err?.stack ?? err));
}
clearTimeout(timer);
finish(0);
