package sim_test

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/comfy/sim"
)

// BenchmarkPromptThroughput queues prompts over HTTP with zero step time
// and reports how many the simulator completes per second.
func BenchmarkPromptThroughput(b *testing.B) {
	graphs := map[string]func(i int) comfy.Prompt{
		"EmptyImage-SaveImage": func(i int) comfy.Prompt { return emptyImageGraph(i, "bench") },
		"txt2img-20steps-64px": func(i int) comfy.Prompt { return txt2imgGraph(i, "bench", 20) },
	}
	for name, graph := range graphs {
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			s, err := sim.New(sim.Config{OutputDir: dir + "/out", InputDir: dir + "/in", TempDir: dir + "/tmp", UserDir: dir + "/user", Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			hs := httptest.NewServer(s)
			defer hs.Close()
			c, _ := comfy.New(hs.URL)
			defer c.Close()
			ctx := context.Background()
			// A follower, so previews are rendered and sent as for a real UI.
			f := c.Follow(ctx, "bench")
			defer f.Close()
			go func() {
				for range f.Events() {
				}
			}()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := c.QueuePrompt(ctx, comfy.PromptRequest{Prompt: graph(i), ClientID: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.WaitIdle(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "prompts/s")
		})
	}
}

// BenchmarkView256MiB downloads a 256 MiB output through /view.
func BenchmarkView256MiB(b *testing.B) {
	dir := b.TempDir()
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	f, err := os.Create(filepath.Join(out, "big.bin"))
	if err != nil {
		b.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("comfysim"), 1<<17) // 1 MiB
	for range 256 {
		f.Write(chunk)
	}
	f.Close()
	s, err := sim.New(sim.Config{OutputDir: out, InputDir: dir + "/in", TempDir: dir + "/tmp", UserDir: dir + "/user", Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	hs := httptest.NewServer(s)
	defer hs.Close()
	c, _ := comfy.New(hs.URL)
	defer c.Close()
	b.SetBytes(256 << 20)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		d, err := c.View(context.Background(), comfy.FileRef{Filename: "big.bin", Type: "output"})
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, d)
		d.Close()
		if err != nil || n != 256<<20 {
			b.Fatalf("read %d: %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N)*(256<<20)/time.Since(start).Seconds(), "bytes/s")
}
