package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/internal/cli"
)

func TestArgs(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	o := &options{}
	cmd := command(o)
	if _, err := cli.Parse(cmd.FlagSet, []string{"--participants", "200", "--rate", "20", "--duration", "90s", "--graph", "sampler", "--seats-from", "5", "--insecure"},
		cli.Options{Env: cmd.Env, EnvFlags: cmd.EnvFlags, Getenv: env(map[string]string{"WORKSHOP_SERVER": "https://w.example.org", "WORKSHOP_ADMIN_TOKEN": "t"})}); err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Server != "https://w.example.org" || c.AdminToken != "t" || c.Participants != 200 || c.Rate != 20 || c.Duration != 90*time.Second ||
		c.Graph != "sampler" || c.SeatsFrom != 5 || !c.Insecure || !c.Cleanup || c.Arrival != "poisson" {
		t.Errorf("config %+v", c)
	}
	for _, bad := range [][]string{
		{"--rate", "1"}, // no token
		{"--admin-token", "t", "--graph", "video"},
		{"--admin-token", "t", "--server", "127.0.0.1:8080"},
		{"--admin-token", "t", "extra"},
		{"--admin-token", "t", "--participants", "0"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), bad, env(nil), &bytes.Buffer{}, &stderr); code != exitBadUsage {
			t.Errorf("%v: exit %d, %s", bad, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, env(nil), &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "--participants") {
		t.Errorf("--help: exit %d, %s", code, stdout.String())
	}
	// A server that is not there: a clear failure, not a hang.
	if code := run(context.Background(), []string{"--admin-token", "t", "--server", "http://127.0.0.1:1", "--duration", "1s", "--quiet"}, env(nil), &bytes.Buffer{}, &stderr); code != exitFailure {
		t.Errorf("no server: exit %d", code)
	}
}
