package integration

import (
	"crypto/tls"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A self-signed server on a LAN: the agent pins its certificate by
// fingerprint, and jobs run through the tunnel over TLS.
func TestSelfSignedServerWithPinnedAgent(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--tls", "self-signed", "--hosts", "127.0.0.1", "--listen", "127.0.0.1:0",
		"--agent-token", agentToken, "--max-pending", "0")
	// startServer passed --tls off first; the later flag wins.
	fp := srv.waitLine(`fingerprint \(for gpu-agent --server-fingerprint\): ([0-9a-f]{64})`, 30*time.Second)[1]
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	old := http.DefaultClient
	http.DefaultClient = insecure
	defer func() { http.DefaultClient = old }()

	a := admin{t, srv.base}
	ev := watch(t, srv.base)
	s := startSim(t)
	startProc(t, "gpu-agent", "--server", srv.base, "--token", agentToken, "--name", "lan", "--comfy", s.base, "--server-fingerprint", fp)
	ev.waitWorkers(a, 1, 30*time.Second)
	j := a.submit("user001", imageGraph("tls", 1))
	ev.waitDone(30*time.Second, j.ID)
	if got := a.job(j.ID); got.Status != "completed" {
		t.Fatalf("job %+v", got)
	}

	// The operator commands say how to trust the server, and then do.
	status := func(extra ...string) (string, error) {
		out, err := exec.Command(binary(t, "workshop"), append([]string{"status", "--server", srv.base, "--admin-token", adminToken}, extra...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := status(); err == nil || !strings.Contains(out, "--server-fingerprint "+fp) || !strings.Contains(out, "--ca-file") {
		t.Errorf("status against an untrusted server: %v\n%s", err, out)
	}
	if out, err := status("--server-fingerprint", fp); err != nil || !strings.Contains(out, "certificate self-signed") {
		t.Errorf("status with the pin: %v\n%s", err, out)
	}

	// A wrong pin is refused.
	bad := startProc(t, "gpu-agent", "--server", srv.base, "--token", agentToken, "--name", "mitm", "--comfy", s.base,
		"--server-fingerprint", "00"+fp[2:])
	bad.waitLine(`(?i)pinned|fingerprint`, 30*time.Second)
}
