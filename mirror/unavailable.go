package mirror

import (
	"strconv"

	"github.com/gofiber/fiber/v2"
)

// unavailablePage is the first visit's page while no GPU host is connected.
// It checks again every few seconds (script) and reloads itself without
// script too (meta refresh), and becomes the UI once the GPUs are there.
const unavailablePage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="10">
<title>Waiting for the GPUs</title>
<style>
  body { font-family: system-ui, sans-serif; background: #202020; color: #ddd; margin: 0;
         display: flex; min-height: 100vh; align-items: center; justify-content: center; }
  main { max-width: 32em; padding: 24px; text-align: center; }
  h1 { font-size: 1.5em; margin: 0 0 .6em; }
  p { line-height: 1.5; color: #bbb; }
  .dot { display: inline-block; width: .6em; height: .6em; border-radius: 50%; background: #e0a030;
         margin-right: .4em; animation: pulse 1.2s ease-in-out infinite; }
  @keyframes pulse { 50% { opacity: .3; } }
</style>
</head>
<body>
<main>
  <h1><span class="dot"></span>The GPUs are not connected yet</h1>
  <p>This workshop's ComfyUI runs on GPU machines that have not connected to the server yet.
     This page reloads by itself as soon as they are there; there is nothing you need to do.</p>
  <p id="status">Checking again in a few seconds&hellip;</p>
</main>
<script>
(function () {
  var status = document.getElementById("status");
  function check() {
    fetch(location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.status !== 503) { location.reload(); return; }
        status.textContent = "Still waiting, checked at " + new Date().toLocaleTimeString() + ".";
        setTimeout(check, 4000);
      })
      .catch(function () { setTimeout(check, 4000); });
  }
  setTimeout(check, 4000);
})();
</script>
</body>
</html>
`

var retryAfter = strconv.Itoa(RetryAfter)

// writeUnavailable answers 503 when nothing is cached and no upstream
// answers: the page for a navigation, JSON for anything else.
func (m *Mirror) writeUnavailable(c *fiber.Ctx, p string) error {
	c.Set(fiber.HeaderRetryAfter, retryAfter)
	c.Set(CacheHeader, Unavailable)
	if isNavigation(p, c.Get(fiber.HeaderAccept), c.Get("Sec-Fetch-Mode")) {
		c.Set(fiber.HeaderCacheControl, ccNoStore)
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		return c.Status(fiber.StatusServiceUnavailable).SendString(unavailablePage)
	}
	return jsonError(c, fiber.StatusServiceUnavailable, "unavailable", "the GPUs are not connected yet")
}
