// Drives a ComfyUI server with @stable-canvas/comfyui-client, a ComfyUI API
// client this project did not write. Run as
//   node client.mjs http://127.0.0.1:PORT            (the simulator)
//   node client.mjs http://127.0.0.1:PORT/user/1/ 'workshop_session=...'
// (a participant's ComfyUI on the workshop server, signed in by cookie).
// With MODEL_FREE=1 it runs only graphs that need no model weights (a real
// ComfyUI on the CPU): the image graph twice, the second time fully cached.
// It prints one JSON line with what it saw and exits non-zero on failure.
import { Client } from "@stable-canvas/comfyui-client";
import WebSocket from "ws";

const base = new URL(process.argv[2]);
const cookie = process.argv[3] || "";
const withCookie = (init = {}) =>
  cookie ? { ...init, headers: { ...(init.headers || {}), Cookie: cookie } } : init;
const cfetch = (url, init) => globalThis.fetch(url, withCookie(init));
// The client opens its socket at the site root, ignoring the sub-path, as
// some ComfyUI clients do; the cookie says whose socket it is.
class CookieWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, cookie ? { headers: { Cookie: cookie } } : {});
  }
}
const client = new Client({
  api_host: base.host,
  api_base: base.pathname.replace(/\/$/, ""),
  clientId: "npm-client",
  WebSocket: CookieWebSocket,
  fetch: cfetch,
});

const seen = { messages: {}, progress: [], images: [], errorType: "", errorNodes: [] };
for (const type of ["status", "execution_start", "execution_cached", "executing", "progress", "executed",
  "execution_error", "execution_interrupted", "b_preview", "b_preview_with_metadata", "unhandled"]) {
  client.on(type, () => { seen.messages[type] = (seen.messages[type] || 0) + 1; });
}

function fail(msg) {
  console.error(msg);
  console.log(JSON.stringify(seen));
  client.close();
  process.exit(1);
}

try {
  await client.connect();
  const stats = await client.getSystemStats();
  if (!stats.devices?.length) fail("system_stats has no devices");

  // 1. The graph COMFYUI-API.md says needs no model weights.
  const emptyImage = {
    "1": { class_type: "EmptyImage", inputs: { width: 64, height: 64, batch_size: 1, color: 0 } },
    "2": { class_type: "SaveImage", inputs: { images: ["1", 0], filename_prefix: "npm" } },
  };
  const runImage = async (polling) => {
    const opts = { disable_random_seed: true, timeout_ms: 20000 };
    const out = polling
      ? await client.enqueue_polling(emptyImage, { ...opts, polling_ms: 50 })
      : await client.enqueue(emptyImage, opts);
    for (const img of out.images) {
      if (img.type !== "url") continue; // previews arrive as buffers
      const res = await cfetch(img.data);
      const bytes = new Uint8Array(await res.arrayBuffer());
      const isPNG = bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
      seen.images.push({ status: res.status, bytes: bytes.length, png: isPNG });
    }
  };
  // The client's socket mode listens for a prompt's events only once it
  // has read the post's answer, so a prompt that runs in milliseconds can
  // send them first, and on a busy machine the client waits for them
  // forever (against any server); its polling mode, which reads
  // /history/{id}, is the one for such prompts. The simulator runs this
  // graph in a millisecond; a real ComfyUI's first run of it takes longer.
  await runImage(!process.env.MODEL_FREE);
  if (process.env.MODEL_FREE) {
    // Unchanged, so fully cached: it finishes in milliseconds, and a real
    // ComfyUI may send its events before it answers the post.
    await runImage(true);
  }

  // 2. A sampler graph, for progress over the socket.
  const txt2img = {
    "4": { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: "v1-5-pruned-emaonly-fp16.safetensors" } },
    "5": { class_type: "EmptyLatentImage", inputs: { width: 64, height: 64, batch_size: 1 } },
    "6": { class_type: "CLIPTextEncode", inputs: { text: "a cat", clip: ["4", 1] } },
    "7": { class_type: "CLIPTextEncode", inputs: { text: "", clip: ["4", 1] } },
    "3": { class_type: "KSampler", inputs: { seed: 1, steps: 4, cfg: 7, sampler_name: "euler", scheduler: "normal",
           denoise: 1, model: ["4", 0], positive: ["6", 0], negative: ["7", 0], latent_image: ["5", 0] } },
    "8": { class_type: "VAEDecode", inputs: { samples: ["3", 0], vae: ["4", 2] } },
    "9": { class_type: "SaveImage", inputs: { images: ["8", 0], filename_prefix: "npm_t2i" } },
  };
  if (!process.env.MODEL_FREE) {
    const out2 = await client.enqueue(txt2img, {
      timeout_ms: 20000,
      progress: (p) => seen.progress.push([p.value, p.max]),
    });
    seen.images2 = out2.images.filter((i) => i.type === "url").length;
  }

  // 3. A broken graph: the client must surface ComfyUI's validation error.
  const broken = { "1": emptyImage["1"], "2": { class_type: "SaveImage", inputs: { filename_prefix: "x" } } };
  try {
    await client.queuePrompt(-1, { prompt: broken, workflow: {} });
    fail("broken graph was accepted");
  } catch (err) {
    seen.errorMessage = String(err?.message ?? err);
  }
  // The same with plain fetch, to read the node_errors the client hides.
  const res = await cfetch(new URL("prompt", base.href.endsWith("/") ? base : base.href + "/"), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: broken, client_id: "npm-client" }),
  });
  const body = await res.json();
  seen.errorStatus = res.status;
  seen.errorType = body.error?.type;
  seen.errorNodes = Object.values(body.node_errors || {}).flatMap((n) => n.errors.map((e) => e.type));
} catch (err) {
  fail("client error: " + (err?.stack ?? err));
}
console.log(JSON.stringify(seen));
client.close();
process.exit(0);
