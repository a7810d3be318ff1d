// Package mirror forwards the participant UI's read-only ComfyUI routes (the
// frontend's static files, object_info, models, embeddings, extensions,
// system_stats, features, workflow_templates, i18n, templates/...) to a
// ComfyUI instance on a GPU host, through the tunnel, and keeps a copy of
// every answer on the server so that the UI still loads while no GPU host is
// connected.
//
// # Cache policy
//
// The cache is keyed by path and query, holds whole bodies in memory up to
// Config.MaxEntryBytes each and Config.MaxCacheBytes in all, and evicts the
// least recently used entries by bytes. Larger bodies are streamed from the
// upstream to the client and never held. With Config.Dir, the 200 answers
// the cache holds are also kept as files there (written when their bytes
// change, removed when evicted) and loaded by New, as stale copies.
//
//   - Content-hashed frontend assets (/assets/name-Hash1234.js and the like,
//     see HashedAsset) never change: once cached they are served without
//     asking the upstream, and the browser is told to keep them for a year.
//   - Everything else (index.html, the API's JSON, unhashed files) is
//     revalidated with the upstream on every request, with If-None-Match /
//     If-Modified-Since when the upstream gave an ETag / Last-Modified; a
//     304, or a 200 with the same bytes, serves the cached copy. An explicit
//     upstream max-age (ComfyUI sends one for images) is honoured for
//     non-HTML, non-JSON bodies. Upstream no-store / no-cache / private are
//     read as "revalidate every time", not as "do not keep": the forwarded
//     routes are the same for every participant (no credentials go
//     upstream), and keeping them is what lets the UI load while the GPU
//     hosts are away. The browser is sent "no-cache" with the validators, so
//     its revalidations are answered by the mirror.
//   - When the upstream is not connected, cannot be reached, times out, or
//     answers 5xx or 429, whatever is cached for the key is served, however
//     old ("stale"). With nothing cached the client gets 503 with a
//     Retry-After: a small self-reloading HTML page for a page navigation, a
//     JSON error for anything else.
//   - 404 and 410 are cached for Config.NotFoundTTL (10 s); other statuses
//     are passed through and not kept (nor do they drop a kept copy). A
//     redirect's Location is put back under the participant's prefix.
//   - A range request for something not cached is forwarded with its Range
//     and streamed as is ("bypass"); once cached, the whole body is served.
//   - Concurrent requests that need the upstream for the same key (misses and
//     revalidations alike) share one upstream request. A body that turns out
//     too big to keep goes to the request that asked; the others each ask
//     for their own stream.
//   - A body of unknown length is read up to MaxEntryBytes before the mirror
//     knows whether it will be kept; past that it is streamed, so one such
//     request holds at most MaxEntryBytes. Bodies with a Content-Length over
//     the limit are streamed from the first byte.
//   - The upstream is asked for gzip. A gzip answer is kept compressed (and
//     decompressed once, when it fits, for Get and for clients that do not
//     accept gzip); a compressible identity answer of 1 KiB or more is
//     compressed once when it is stored. Clients that accept gzip get the
//     compressed copy.
//
// Nothing of the participant's request goes upstream except the path, the
// query and, for uncached range requests, the Range header: no Cookie, no
// Authorization, no forwarding headers. Every answer carries
// X-Workshop-Cache: hit, miss, revalidated, stale, bypass or unavailable.
package mirror
