package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Backup while serving, restore into a stopped server, prune, metrics, and
// SIGHUP without TLS.
func TestOperations(t *testing.T) {
	s := startStack(t)
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, s.a.submit("user001", imageGraph("ops", i)).ID)
	}
	s.ev.waitDone(30*time.Second, ids...)

	// SIGHUP does not stop a server without TLS.
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitLine(`nothing to reload`, 10*time.Second)
	if j := s.a.job(ids[0]); j.Status != "completed" {
		t.Fatalf("after SIGHUP: %+v", j)
	}

	// Prometheus metrics: admin only.
	resp, err := http.Get(s.base + "/metrics")
	if err != nil || resp.StatusCode != 401 {
		t.Errorf("metrics without a token: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", s.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`workshop_jobs{status="completed"} 3`, "workshop_job_run_seconds_count 3", `workshop_instance_connected{instance="gpu-a/0"} 1`,
		"workshop_http_request_duration_seconds_bucket", `workshop_agent_connects_total{agent="gpu-a"} 1`, "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Backup while serving; restore into a new data dir and serve it.
	// The flags may follow the file; an existing file is kept unless --force.
	backup := filepath.Join(t.TempDir(), "backup.db")
	bare := func(args ...string) (string, error) {
		out, err := exec.Command(binary(t, "workshop"), args...).CombinedOutput()
		return string(out), err
	}
	if out, err := bare("backup", backup, "--server", s.base, "--admin-token", adminToken); err != nil || !strings.Contains(out, "backup written") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	before, _ := os.ReadFile(backup)
	if out, err := runCLI(t, s.server, "backup", backup); err == nil || !strings.Contains(out, "--force") {
		t.Errorf("backup over an existing file: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(backup); !bytes.Equal(before, after) {
		t.Error("the refused backup changed the file")
	}
	if out, err := runCLI(t, s.server, "backup", "--force", backup); err != nil || !strings.Contains(out, "backup written") {
		t.Errorf("backup --force: %v\n%s", err, out)
	}
	if out, err := bare("restore", backup); err == nil || !strings.Contains(out, "give --data DIR") {
		t.Errorf("restore without --data: %v\n%s", err, out)
	}
	data2 := t.TempDir()
	cmd := exec.Command(binary(t, "workshop"), "restore", "--data", data2, backup)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	// Restoring over a running server's store is refused.
	cmd = exec.Command(binary(t, "workshop"), "restore", "--data", s.data, backup)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "stop the server") {
		t.Errorf("restore over a live store: %v\n%s", err, out)
	}
	srv2 := startServer(t, data2)
	a2 := admin{t, srv2.base}
	for _, id := range ids {
		if j := a2.job(id); j.Status != "completed" {
			t.Errorf("restored job %s: %+v", id, j)
		}
	}

	// Prune counts first and deletes only when told to: no age, a zero
	// age and no confirmation are refused, and change nothing.
	for _, args := range [][]string{{"prune"}, {"prune", "--older-than", "0s"}, {"prune", "--older-than", "-1h"}, {"prune", "--all"}} {
		if out, err := runCLI(t, s.server, args...); err == nil || exitCode(err) != 2 {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	if out, err := runCLI(t, s.server, "prune", "--all", "--dry-run"); err != nil || !strings.Contains(out, "has 3 finished jobs") || !strings.Contains(out, "nothing deleted") {
		t.Errorf("prune --dry-run: %v\n%s", err, out)
	}
	if out, err := runCLI(t, s.server, "prune", "--older-than", "1h", "--yes"); err != nil || !strings.Contains(out, "nothing to delete") {
		t.Errorf("prune of nothing that old: %v\n%s", err, out)
	}
	if j := s.a.job(ids[0]); j.Status != "completed" {
		t.Fatalf("a refused prune deleted: %+v", j)
	}
	if out, err := runCLI(t, s.server, "prune", "--all", "--yes"); err != nil || !strings.Contains(out, "deleted 3 finished jobs") {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	var j job
	if st := s.a.do("GET", "/api/jobs/"+ids[0], nil, &j); st != 404 {
		t.Errorf("pruned job: %d", st)
	}

	// Status names the build's version, in text and JSON.
	if out, err := runCLI(t, s.server, "status"); err != nil || !strings.Contains(out, "gpu-a/0") || !strings.Contains(out, testVersion) {
		t.Errorf("status: %v\n%s", err, out)
	}
	var st struct {
		Health struct{ Version string } `json:"health"`
		Queue  struct {
			Workers []struct{ ID string } `json:"workers"`
		} `json:"queue"`
	}
	out, err := runCLI(t, s.server, "status", "--json")
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Health.Version != testVersion || len(st.Queue.Workers) != 1 {
		t.Errorf("status --json: %v %+v\n%s", err, st, out)
	}
}

// Preflight: a test graph on every instance, and every workshop workflow's
// nodes and models checked; missing things are named and the exit is
// non-zero.
func TestPreflight(t *testing.T) {
	s := startStack(t)
	fixture := filepath.Join("..", "..", "shared", "fixtures", "workflows", "flux2_klein_4b_text_to_image.json")
	raw, err := os.ReadFile(fixture)
	if err != nil {
		t.Skip("fixtures not present at ../shared/fixtures")
	}
	req, _ := http.NewRequest("PUT", s.base+"/api/workflows/flux2.json", bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("publish: %v %v", resp.StatusCode, err)
	}
	if out, err := runCLI(t, s.server, "preflight"); err != nil || !strings.Contains(out, "all instances are ready") {
		t.Fatalf("preflight with everything present: %v\n%s", err, out)
	}
	s.a.do("PUT", "/api/workflows/broken.json", map[string]any{
		"1": map[string]any{"class_type": "NoSuchNode", "inputs": map[string]any{}},
		"2": map[string]any{"class_type": "CheckpointLoaderSimple", "inputs": map[string]any{"ckpt_name": "missing-model.safetensors"}},
	}, nil)
	out, err := runCLI(t, s.server, "preflight")
	if err == nil || !strings.Contains(out, "NoSuchNode") || !strings.Contains(out, "missing-model.safetensors") || !strings.Contains(out, "gpu-a/0") {
		t.Errorf("preflight with missing things: %v\n%s", err, out)
	}
}
