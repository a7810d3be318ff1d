package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/comfy-workshop/workshop/tunnel"
)

// nvidiaSMIArgs query one CSV line per GPU.
var nvidiaSMIArgs = []string{
	"--query-gpu=index,name,uuid,utilization.gpu,memory.used,memory.total",
	"--format=csv,noheader,nounits",
}

// prober produces the agent's reports: GET /system_stats on every local
// ComfyUI and, when nvidia-smi exists, the GPUs' utilisation and memory.
type prober struct {
	instances []tunnel.Instance
	client    *http.Client
	smi       string // path of nvidia-smi, "" when absent
	log       *slog.Logger
	models    json.RawMessage // the model check, set once before the agent connects

	mu      sync.Mutex
	healthy map[string]bool // last state, to log changes only
	smiErr  string
}

func newProber(instances []tunnel.Instance, log *slog.Logger) *prober {
	smi, _ := exec.LookPath("nvidia-smi")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // local instances are never reached through a proxy
	tr.MaxIdleConnsPerHost = 2
	return &prober{
		instances: instances,
		client:    &http.Client{Transport: tr, Timeout: 10 * time.Second},
		smi:       smi,
		log:       log,
		healthy:   map[string]bool{},
	}
}

// Report is the agent's tunnel.ReportFunc.
func (p *prober) Report(ctx context.Context) tunnel.Report {
	r := tunnel.Report{Instances: make([]tunnel.InstanceStatus, len(p.instances))}
	var wg sync.WaitGroup
	for i, in := range p.instances {
		wg.Go(func() { r.Instances[i] = p.probeInstance(ctx, in) })
	}
	if p.smi != "" {
		wg.Go(func() {
			gpus, err := queryGPUs(ctx, p.smi)
			p.noteSMI(err)
			r.GPUs = gpus
		})
	}
	wg.Wait()
	r.Time = time.Now()
	r.Models = p.models
	for _, st := range r.Instances {
		p.noteHealth(st)
	}
	return r
}

func (p *prober) probeInstance(ctx context.Context, in tunnel.Instance) tunnel.InstanceStatus {
	st := tunnel.InstanceStatus{Name: in.Name, URL: in.URL}
	stats, err := p.systemStats(ctx, in.URL)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Healthy = true
	st.SystemStats = stats
	return st
}

// systemStats returns ComfyUI's /system_stats answer, checked to be a JSON
// object and compacted.
func (p *prober) systemStats(ctx context.Context, base string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/system_stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the report already
		}
		return nil, fmt.Errorf("GET /system_stats: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET /system_stats: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /system_stats: %s", resp.Status)
	}
	var loose map[string]any
	if err := json.Unmarshal(body, &loose); err != nil {
		return nil, fmt.Errorf("GET /system_stats: not a JSON object: %v", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, body); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (p *prober) noteHealth(st tunnel.InstanceStatus) {
	p.mu.Lock()
	was, known := p.healthy[st.Name]
	p.healthy[st.Name] = st.Healthy
	p.mu.Unlock()
	switch {
	case st.Healthy && (!known || !was):
		p.log.Info("ComfyUI instance healthy", "instance", st.Name, "url", st.URL)
	case !st.Healthy && (!known || was):
		p.log.Warn("ComfyUI instance unhealthy", "instance", st.Name, "url", st.URL, "err", st.Error)
	}
}

func (p *prober) noteSMI(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	p.mu.Lock()
	changed := msg != p.smiErr
	p.smiErr = msg
	p.mu.Unlock()
	if changed && err != nil {
		p.log.Warn("nvidia-smi failed", "err", err)
	}
}

// queryGPUs runs nvidia-smi and parses its CSV.
func queryGPUs(ctx context.Context, smi string) ([]tunnel.GPUStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, smi, nvidiaSMIArgs...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if s := strings.TrimSpace(stderr.String()); s != "" {
			return nil, fmt.Errorf("%v: %s", err, s)
		}
		return nil, err
	}
	return parseGPUs(out)
}

// parseGPUs parses "index, name, uuid, util, mem used, mem total" lines.
func parseGPUs(out []byte) ([]tunnel.GPUStats, error) {
	rd := csv.NewReader(bytes.NewReader(out))
	rd.TrimLeadingSpace = true
	rd.FieldsPerRecord = -1
	recs, err := rd.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi output: %v", err)
	}
	var gpus []tunnel.GPUStats
	for _, rec := range recs {
		if len(rec) < 6 {
			return nil, fmt.Errorf("nvidia-smi output: %d fields in %q, want 6", len(rec), strings.Join(rec, ","))
		}
		idx, err := strconv.Atoi(strings.TrimSpace(rec[0]))
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi output: GPU index %q", rec[0])
		}
		gpus = append(gpus, tunnel.GPUStats{
			Index:          idx,
			Name:           strings.TrimSpace(rec[1]),
			UUID:           strings.TrimSpace(rec[2]),
			UtilizationPct: number(rec[3]),
			MemoryUsedMiB:  number(rec[4]),
			MemoryTotalMiB: number(rec[5]),
		})
	}
	return gpus, nil
}

// number parses a float; "[N/A]", "[Not Supported]" and the like are -1.
func number(s string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return -1
	}
	return f
}
