package proxy

import (
	"html/template"
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/seats"
)

// The pages participants see before their ComfyUI: the start page at / and
// /join/ that asks for the join code, and what a wrong code, a disabled
// seat or too many tries answer. Plain HTML that works without script, on
// a phone.

// pageData is what one page shows.
type pageData struct {
	Title   string
	Message string
	Error   string
	Form    bool   // ask for the join code
	Code    string // typed before, to correct
	Seat    int    // signed in at this seat: offer to go on
	// Switch is the seat whose join link a browser signed in to Seat
	// opened: it is asked (a POST form) before it is moved.
	Switch     int
	SwitchCode string
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}} · ComfyUI Workshop</title>
<style>
:root{color-scheme:dark;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
body{background:#202020;color:#ddd;display:grid;place-items:center;min-height:100vh;margin:0}
main{width:min(26rem,100%);box-sizing:border-box;padding:2rem 1.25rem;text-align:center}
h1{font-size:1.5rem;margin:0 0 .75rem}p{line-height:1.5;margin:.5rem 0 1rem}
.error{background:#4a1c1c;color:#ffd7d5;border-radius:8px;padding:.6rem .8rem}
form{display:flex;flex-direction:column;gap:.75rem;margin:1.25rem 0}
label{font-weight:600}
input{font:inherit;font-size:1.4rem;letter-spacing:.12em;text-align:center;padding:.65rem;border-radius:8px;border:1px solid #555;background:#111;color:#fff}
button,.button{font:inherit;font-weight:600;padding:.75rem;border-radius:8px;border:0;background:#3d7bf7;color:#fff;cursor:pointer;text-decoration:none;display:block}
.continue{margin:1rem 0 1.5rem}
footer{margin-top:2rem;font-size:.9rem;color:#999}a{color:#8cb4ff}
</style></head>
<body><main>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="error" id="join-error" role="alert">{{.Error}}</p>{{end}}
{{if .Message}}<p id="join-message">{{.Message}}</p>{{end}}
{{if .Switch}}<form method="post" action="/join/{{.SwitchCode}}" id="join-switch"><button type="submit">Switch to seat {{.Switch}}</button></form>{{end}}
{{if .Seat}}<a class="button continue" id="join-continue" href="/user/{{.Seat}}/">{{if .Switch}}Stay in seat {{.Seat}}{{else}}Open your ComfyUI (seat {{.Seat}}){{end}}</a>{{end}}
{{if .Form}}<form method="get" action="/join" id="join-form">
<label for="join-code">Join code</label>
<input id="join-code" name="code" value="{{.Code}}" autocomplete="off" autocapitalize="none" autocorrect="off" spellcheck="false" required{{if not .Code}} autofocus{{end}} placeholder="abcd2345ef">
<button type="submit" id="join-submit">Join</button>
</form>{{end}}
<footer>Instructor? <a href="/admin" id="admin-link">Open the admin page</a>.</footer>
</main></body></html>
`))

// sendPage answers with a page and a status.
func sendPage(c *fiber.Ctx, status int, d pageData) error {
	var b strings.Builder
	if err := pageTmpl.Execute(&b, d); err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(status).Type("html").SendString(b.String())
}

const askCode = "Type the join code from your card, or scan its QR code."

// start is the bare address and /join/: the page that asks for the code,
// and a way back for someone already signed in.
func (p *Proxy) start(c *fiber.Ctx) error {
	if c.Context().QueryArgs().Has("code") {
		code := normalizeCode(c.Query("code"))
		if code == "" {
			return sendPage(c, fiber.StatusBadRequest, pageData{Title: "Join the workshop", Error: "Type the code first.", Form: true})
		}
		return c.Redirect("/join/"+url.PathEscape(code), fiber.StatusSeeOther)
	}
	d := pageData{Title: "Join the workshop", Message: askCode, Form: true}
	if ses, ok := p.cfg.Seats.Session(c.Cookies(seats.CookieName)); ok && ses.Seat > 0 {
		d.Seat = ses.Seat
		d.Message = "You are signed in. To take another seat, type its join code."
	}
	return sendPage(c, fiber.StatusOK, d)
}

// normalizeCode reads a code as people type or paste it: any case, with
// spaces or dashes, or the whole join link.
func normalizeCode(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "/join/"); i >= 0 {
		s = s[i+len("/join/"):]
	}
	return strings.ToLower(strings.NewReplacer(" ", "", "-", "", "/", "").Replace(s))
}

// joinFailed answers a join that did not work.
func joinFailed(c *fiber.Ctx, code string, err error) error {
	if workshop.ErrorCode(err) == workshop.EFORBIDDEN {
		return sendPage(c, fiber.StatusForbidden, pageData{Title: "This seat is disabled", Error: sentence(workshop.ErrorMessage(err))})
	}
	return sendPage(c, fiber.StatusNotFound, pageData{Title: "Join the workshop", Form: true, Code: code,
		Error: "This join code is not valid. Check the code on your card, or ask the instructor."})
}

func tooManyTries(c *fiber.Ctx) error {
	c.Set(fiber.HeaderRetryAfter, "60")
	return sendPage(c, fiber.StatusTooManyRequests, pageData{Title: "Too many tries",
		Error: "Too many wrong join codes. Wait a minute, then try your code again."})
}

// switchSeats asks a browser signed in to one seat whether to move to
// another: a join link must not silently switch someone's seat.
func switchSeats(c *fiber.Ctx, from, to int, code string) error {
	return sendPage(c, fiber.StatusOK, pageData{Title: "Switch to seat " + strconv.Itoa(to) + "?",
		Message: "This browser is signed in to seat " + strconv.Itoa(from) + ".", Seat: from, Switch: to, SwitchCode: url.PathEscape(code)})
}

// signInFirst is /user/{n}/ in a browser without a session for it.
func signInFirst(c *fiber.Ctx, n int) error {
	return sendPage(c, fiber.StatusUnauthorized, pageData{Title: "Join the workshop", Form: true,
		Message: "This is seat " + strconv.Itoa(n) + "'s workspace. " + askCode})
}

// disabledSeat is every answer of a disabled seat: a page for a browser,
// the JSON error for the frontend's requests.
func disabledSeat(c *fiber.Ctx, n int) error {
	err := seats.Disabled(n)
	if wantsHTML(c) {
		return sendPage(c, fiber.StatusForbidden, pageData{Title: "This seat is disabled", Error: sentence(workshop.ErrorMessage(err))})
	}
	return err
}

// sentence makes an error message (never empty) a sentence.
func sentence(s string) string { return strings.ToUpper(s[:1]) + s[1:] + "." }
