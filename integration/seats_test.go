package integration

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

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
	if code, _ := p.do("GET", "/user/1/api/workshop/me", nil, ""); code != 401 && code != 403 {
		t.Errorf("disabled seat still served: %d", code)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, _ := noRedirect.Get(srv.base + "/join/" + st.seatCode(1))
	if resp.StatusCode != 403 {
		t.Errorf("join of a disabled seat: %d", resp.StatusCode)
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
