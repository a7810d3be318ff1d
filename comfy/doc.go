// Package comfy speaks ComfyUI's HTTP and WebSocket API.
//
// It holds three things that the rest of the workshop shares:
//
//   - the wire types (API-format graphs, queue items, history entries,
//     error bodies, object_info node definitions, socket messages),
//   - a Client that drives one ComfyUI instance over HTTP, plus a Follower
//     that reads its /ws socket and reconnects when the socket drops,
//   - ValidatePrompt, the same checks ComfyUI's execution.validate_prompt
//     runs, so a graph can be judged against a cached object_info without a
//     round trip to a GPU host.
//
// The shapes follow ComfyUI around v0.8 (January 2026); see
// shared/COMFYUI-API.md. Package comfy/sim is a ComfyUI simulator built on
// these types.
package comfy
