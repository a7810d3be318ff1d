package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/comfy/sim"
)

// TestThirdPartyNPMClient runs @stable-canvas/comfyui-client (npm) against
// the simulator with the machine's Node.js. CI installs it first with
// `npm ci --prefix comfy/sim/npmclient`.
func TestThirdPartyNPMClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; this test needs Node.js 20+")
	}
	if _, err := os.Stat(filepath.Join("npmclient", "node_modules", "@stable-canvas", "comfyui-client")); err != nil {
		t.Skip("npm packages missing: run `npm ci --prefix comfy/sim/npmclient`")
	}
	// Steps of 100 ms: the sampler graph, run in the client's socket mode,
	// sends its events well after the post's answer, which is when that
	// mode starts listening (see client.mjs).
	e := start(t, sim.Config{StepDelay: 100 * time.Millisecond})
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, node, "client.mjs", e.hs.URL)
	cmd.Dir = "npmclient"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var seen struct {
		Messages map[string]int `json:"messages"`
		Progress [][2]float64   `json:"progress"`
		Images   []struct {
			Status int  `json:"status"`
			Bytes  int  `json:"bytes"`
			PNG    bool `json:"png"`
		} `json:"images"`
		Images2     int      `json:"images2"`
		ErrorStatus int      `json:"errorStatus"`
		ErrorType   string   `json:"errorType"`
		ErrorNodes  []string `json:"errorNodes"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &seen); err != nil {
		t.Fatalf("bad output %q: %v", stdout.String(), err)
	}
	if len(seen.Images) != 1 || seen.Images[0].Status != 200 || !seen.Images[0].PNG || seen.Images[0].Bytes == 0 {
		t.Errorf("EmptyImage -> SaveImage output: %+v", seen.Images)
	}
	if len(seen.Progress) != 4 || seen.Progress[3] != [2]float64{4, 4} || seen.Images2 != 1 {
		t.Errorf("sampler progress %v, images %d", seen.Progress, seen.Images2)
	}
	for _, typ := range []string{"status", "execution_start", "executing", "executed", "progress", "b_preview"} {
		if seen.Messages[typ] == 0 {
			t.Errorf("client saw no %s message: %v", typ, seen.Messages)
		}
	}
	if seen.ErrorStatus != 400 || seen.ErrorType != "prompt_outputs_failed_validation" || !slices.Contains(seen.ErrorNodes, "required_input_missing") {
		t.Errorf("broken graph: %d %s %v", seen.ErrorStatus, seen.ErrorType, seen.ErrorNodes)
	}
}
