package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Bad flags, bad values and an unwritable data directory fail at start with
// a clear message and a non-zero exit; every binary has --help.
func TestServeRefusesBadStart(t *testing.T) {
	ro := filepath.Join(t.TempDir(), "ro")
	os.MkdirAll(ro, 0o500)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"serve", "--bogus"}, nil, "flag provided but not defined"},
		{[]string{"serve", "extra"}, nil, "takes no arguments"},
		{[]string{"serve", "--tls", "off", "--public-url", "workshop.example.org"}, nil, "--public-url"},
		{[]string{"serve", "--tls", "off", "--public-url", "https://w.example.org/path"}, nil, "without a path"},
		{[]string{"serve", "--tls", "off", "--queue-mode", "lottery"}, nil, "--queue-mode"},
		{[]string{"serve", "--tls", "off", "--seats", "0"}, nil, "--seats"},
		{[]string{"serve", "--tls", "off", "--max-pending", "-1"}, nil, "--max-pending"},
		{[]string{"serve", "--tls", "off", "--listen", "nowhere"}, nil, "--listen"},
		{[]string{"serve", "--tls", "maybe"}, nil, "--tls"},
		{[]string{"serve", "--tls", "acme"}, nil, "--domain"},
		{[]string{"serve", "--tls", "off", "--admin-token", "short"}, nil, "16 characters"},
		{[]string{"serve", "--tls", "off", "--data", file}, nil, "data dir"},
		{[]string{"serve", "--tls", "off"}, []string{"QUEUE_MODE=lottery"}, "--queue-mode"},
		{[]string{"serve", "--tls", "off"}, []string{"WORKSHOP_SEATS=many"}, "seats"},
		{[]string{"nonsense"}, nil, ""},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		cases = append(cases, struct {
			args []string
			env  []string
			want string
		}{[]string{"serve", "--tls", "off", "--data", ro}, nil, "not writable"})
	}
	for _, c := range cases {
		cmd := exec.Command(binary(t, "workshop"), c.args...)
		cmd.Env = append(os.Environ(), c.env...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%v %v: exit 0\n%s", c.args, c.env, out)
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%v %v: %q lacks %q", c.args, c.env, out, c.want)
		}
	}
}

// Every binary has the same command line: --help on stdout with status 0,
// --version with the version the build stamped, and a mistake answered
// with one line and a pointer to --help (not the help itself), status 2.
func TestEveryBinaryCommandLine(t *testing.T) {
	for _, c := range []struct {
		bin  string
		args []string // a mistake
	}{
		{"workshop", []string{"seats", "list", "--bogus"}},
		{"gpu-agent", []string{"--bogus"}},
		{"comfysim", []string{"--bogus"}},
		{"workshop-load", []string{"--bogus"}},
		{"workshop", []string{"backup"}},
		{"workshop", []string{"seats", "rename", "3"}},
		{"workshop", []string{"nonsense"}},
		{"workshop", []string{"serve", "--tls", "off", "--memory-limit-mb", "-1"}},
	} {
		var stdout, stderr strings.Builder
		cmd := exec.Command(binary(t, c.bin), c.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code := exitCode(err); code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], c.bin) ||
			!strings.Contains(lines[1], "--help") || stdout.Len() > 0 {
			t.Errorf("%s %v: exit %d, stdout %q, stderr %q", c.bin, c.args, code, stdout.String(), stderr.String())
		}
	}
	for _, bin := range []string{"workshop", "gpu-agent", "comfysim", "workshop-load"} {
		out, err := exec.Command(binary(t, bin), "--version").Output()
		if err != nil || strings.TrimSpace(string(out)) != bin+" "+testVersion {
			t.Errorf("%s --version: %v %q", bin, err, out)
		}
		out, err = exec.Command(binary(t, bin), "--help").Output()
		if err != nil || !strings.HasPrefix(string(out), "Usage: "+bin) || !strings.Contains(string(out), "-h, --help") {
			t.Errorf("%s --help: %v\n%s", bin, err, out)
		}
	}
	out, err := exec.Command(binary(t, "workshop"), "prune", "--help").Output()
	if err != nil || !strings.Contains(string(out), "--older-than D") || strings.Contains(string(out), "-1ns") {
		t.Errorf("prune --help: %v\n%s", err, out)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// SIGTERM stops the server cleanly: requests in flight finish, the store
// closes, exit status 0.
func TestServeStopsCleanly(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--config", writeConfig(t, "queue-mode: fifo\nseats: 4\n"))
	a := admin{t, srv.base}
	var st struct {
		Mode string `json:"mode"`
	}
	a.do("GET", "/api/queue/status", nil, &st)
	if st.Mode != "fifo" {
		t.Errorf("mode from the config file: %q", st.Mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.stop(ctx); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	srv.waitLine(`msg=stopped`, time.Second)
}

func writeConfig(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "workshop.yaml")
	os.WriteFile(p, []byte(body), 0o600)
	return p
}

// serve says where the admin page is and where the join links are; with
// --public-url the links and QR codes use it, and links that would point
// at the server's own loopback are warned about, in the log and to the
// admin page.
func TestServeSaysWhereToGo(t *testing.T) {
	local := startServer(t, t.TempDir())
	local.waitLine(`admin page: `+regexp.QuoteMeta(local.base)+`/admin \(sign in with the admin token`, 10*time.Second)
	local.waitLine(`join links and the printable QR sheet`, time.Second)
	local.waitLine(`level=WARN .*--public-url`, time.Second)
	var seats struct {
		Seats []struct {
			JoinURL string `json:"join_url"`
		} `json:"seats"`
		Warning string `json:"join_warning"`
	}
	admin{t, local.base}.do("GET", "/api/seats", nil, &seats)
	if seats.Warning == "" || !strings.HasPrefix(seats.Seats[0].JoinURL, local.base+"/join/") {
		t.Errorf("through loopback: %+v", seats)
	}

	public := startServer(t, t.TempDir(), "--public-url", "http://192.0.2.10:8080/")
	public.waitLine(`admin page: http://192\.0\.2\.10:8080/admin `, 10*time.Second)
	seats.Warning = "unset"
	admin{t, public.base}.do("GET", "/api/seats", nil, &seats)
	if seats.Warning != "" || !strings.HasPrefix(seats.Seats[0].JoinURL, "http://192.0.2.10:8080/join/") {
		t.Errorf("with --public-url: %+v", seats)
	}
}
