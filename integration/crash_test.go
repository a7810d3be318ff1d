package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const adminToken = "integration-admin-token-0123456789"

type server struct {
	*proc
	base string
}

func startServer(t testing.TB, data string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--tls", "off", "--listen", "127.0.0.1:0", "--data", data,
		"--admin-token", adminToken}, extra...)
	p := startProc(t, "workshop", args...)
	m := p.waitLine(`listening on (https?://\S+)`, 30*time.Second)
	return &server{proc: p, base: m[1]}
}

type ackedJob struct {
	ID       string          `json:"id"`
	UserID   string          `json:"user_id"`
	Workflow json.RawMessage `json:"workflow"`
	Metadata json.RawMessage `json:"metadata"`
}

// A job that got a 201 is on disk: kill -9 the server in the middle of a
// storm of concurrent submissions, restart it, and find every one intact.
func TestCrashLosesNoAcknowledgedJob(t *testing.T) {
	data := t.TempDir()
	srv := startServer(t, data, "--max-pending", "0")

	const clients = 32
	const killAfter = 400
	client := &http.Client{Timeout: 10 * time.Second}
	var acked sync.Map
	var count atomic.Int64
	reached := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				body := fmt.Sprintf(`{"user_id":"user%03d","workflow":{"1":{"class_type":"EmptyImage","inputs":{"width":%d,"height":64,"batch_size":1,"color":%d}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"c%d"}}},"metadata":{"client":%d,"n":%d}}`, c, 64+i, c, c, c, i)
				req, _ := http.NewRequestWithContext(ctx, "POST", srv.base+"/api/jobs", bytes.NewBufferString(body))
				req.Header.Set("Authorization", "Bearer "+adminToken)
				resp, err := client.Do(req)
				if err != nil {
					return // the server is gone
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					continue
				}
				var j ackedJob
				if err := json.Unmarshal(raw, &j); err != nil {
					continue // cut mid-body: not acknowledged
				}
				var sent struct{ Workflow json.RawMessage }
				json.Unmarshal([]byte(body), &sent)
				j.Workflow = sent.Workflow // the 201 does not echo it
				acked.Store(j.ID, j)
				if count.Add(1) >= killAfter {
					once.Do(func() { close(reached) })
				}
			}
		}(c)
	}
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		t.Fatal("the storm did not reach its size")
	}
	srv.kill9()
	cancel()
	wg.Wait()

	srv2 := startServer(t, data)
	n := 0
	acked.Range(func(k, v any) bool {
		want := v.(ackedJob)
		req, _ := http.NewRequest("GET", srv2.base+"/api/jobs/"+want.ID, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got ackedJob
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("acknowledged job %s lost: status %d", want.ID, resp.StatusCode)
			return true
		}
		if got.UserID != want.UserID || !bytes.Equal(compact(got.Workflow), compact(want.Workflow)) || !bytes.Equal(compact(got.Metadata), compact(want.Metadata)) {
			t.Errorf("job %s changed: got %+v want %+v", want.ID, got, want)
		}
		n++
		return true
	})
	t.Logf("%d acknowledged jobs, all present after kill -9 and restart", n)
	if n < killAfter {
		t.Errorf("only %d acknowledged", n)
	}
}

func compact(b []byte) []byte {
	var out bytes.Buffer
	json.Compact(&out, b)
	return out.Bytes()
}
