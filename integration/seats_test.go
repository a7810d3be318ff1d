package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
)

// seatsList is GET /api/seats, in part.
type seatsList struct {
	Seats []struct {
		Seat int    `json:"seat"`
		Name string `json:"name"`
	} `json:"seats"`
}

func seatName(a admin, n int) string {
	var seats seatsList
	a.do("GET", "/api/seats", nil, &seats)
	for _, s := range seats.Seats {
		if s.Seat == n {
			return s.Name
		}
	}
	return ""
}

func runCLI(t *testing.T, srv *server, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary(t, "workshop"), args...)
	cmd.Env = append(cmd.Environ(), "WORKSHOP_SERVER="+srv.base, "WORKSHOP_ADMIN_TOKEN="+adminToken)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The seats commands work against a running server; joining follows the
// seats' state.
func TestSeatsCommandsAndJoining(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--seats", "2")
	a := admin{t, srv.base}
	out, err := runCLI(t, srv, "seats", "list")
	if err != nil || !strings.Contains(out, "user001") || !strings.Contains(out, "user002") || !strings.Contains(out, "/join/") {
		t.Fatalf("seats list: %v\n%s", err, out)
	}
	if out, err = runCLI(t, srv, "seats", "add", "Dana"); err != nil || !strings.Contains(out, "user003") || !strings.Contains(out, "Dana") {
		t.Fatalf("seats add: %v\n%s", err, out)
	}
	// Flags after the arguments are flags, not part of the name; a
	// misspelled flag changes nothing.
	bare := func(args ...string) (string, error) {
		out, err := exec.Command(binary(t, "workshop"), args...).CombinedOutput()
		return string(out), err
	}
	if out, err = bare("seats", "rename", "3", "--server", srv.base, "--admin-token", adminToken, "Alice"); err != nil || !strings.Contains(out, "Alice") {
		t.Fatalf("seats rename with flags after the seat: %v\n%s", err, out)
	}
	if out, err = bare("seats", "rename", "3", "--server", srv.base, "--admin-tokn", adminToken, "Bob"); err == nil || !strings.Contains(out, "-admin-tokn") {
		t.Errorf("misspelled flag: %v\n%s", err, out)
	}
	if name := seatName(a, 3); name != "Alice" {
		t.Errorf("seat 3 is named %q", name)
	}
	var listed seatsList
	if out, err = runCLI(t, srv, "seats", "list", "--json"); err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed.Seats) != 3 || listed.Seats[2].Name != "Alice" {
		t.Errorf("seats list --json: %v\n%s", err, out)
	}
	if out, err = runCLI(t, srv, "seats", "rename", "1", "Alice", "Smith"); err != nil || !strings.Contains(out, "Alice Smith") {
		t.Fatalf("seats rename: %v\n%s", err, out)
	}
	if out, err = runCLI(t, srv, "seats", "remove", "3"); err != nil {
		t.Fatalf("seats remove: %v\n%s", err, out)
	}
	if out, err = runCLI(t, srv, "seats", "remove", "3"); err == nil || !strings.Contains(out, "does not exist") {
		t.Errorf("removing a missing seat: %v\n%s", err, out)
	}
	if out, err = runCLI(t, srv, "seats", "rename", "x", "y"); err == nil || !strings.Contains(out, "not a seat number") {
		t.Errorf("bad seat number: %v\n%s", err, out)
	}
	cmd := exec.Command(binary(t, "workshop"), "seats", "list", "--server", srv.base, "--admin-token", "wrong-wrong-wrong-wrong")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not valid") {
		t.Errorf("wrong token: %v %s", err, out)
	}

	// Joining: a good code signs in; a disabled seat and wrong codes are
	// refused with a page, and wrong codes are rate-limited.
	st := &stack{server: srv, a: a}
	p := st.join(1)
	if code, _ := p.do("GET", "/user/1/api/workshop/me", nil, ""); code != 200 {
		t.Fatalf("joined seat: %d", code)
	}
	if code := a.do("PATCH", "/api/seats/1", map[string]any{"disabled": true}, nil); code != 200 {
		t.Fatal(code)
	}
	// A disabled seat says so, the same way, wherever its participant goes.
	const disabled = "eat 1 is disabled: ask the instructor"
	if code, body := p.do("GET", "/user/1/api/workshop/me", nil, ""); code != 403 || !strings.Contains(string(body), disabled) {
		t.Errorf("disabled seat's API: %d %s", code, body)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/join/" + st.seatCode(1), "/user/1/"} {
		req, _ := http.NewRequest("GET", srv.base+path, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(body), "This seat is disabled") || !strings.Contains(string(body), disabled) {
			t.Errorf("%s of a disabled seat: %d %s", path, resp.StatusCode, body)
		}
	}
	// The bare address and /join/ ask for the code.
	for _, path := range []string{"/", "/join/", "/join"} {
		resp, err := http.Get(srv.base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(string(body), `id="join-code"`) || !strings.Contains(string(body), `href="/admin"`) {
			t.Errorf("GET %s: %d %s\n%s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	resp, _ := noRedirect.Get(srv.base + "/join?code=" + url.QueryEscape(" "+strings.ToUpper(st.seatCode(2))+" "))
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/join/"+st.seatCode(2) {
		t.Errorf("the form's answer: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp.Body.Close()
	last := 0
	for i := 0; i < 12; i++ {
		resp, err := noRedirect.Get(srv.base + "/join/not-a-code")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		last = resp.StatusCode
	}
	if last != 429 {
		t.Errorf("wrong codes are not rate-limited: %d", last)
	}
	// /user/2 redirects to /user/2/; without a session the page says how to join.
	resp, _ = noRedirect.Get(srv.base + "/user/2")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "/user/2/" {
		t.Errorf("/user/2: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", srv.base+"/user/2/", nil)
	req.Header.Set("Accept", "text/html")
	resp, _ = http.DefaultClient.Do(req)
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("/user/2/ without a session: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp.Body.Close()
}
