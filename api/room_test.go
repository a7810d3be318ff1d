package api_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
	"github.com/comfy-workshop/workshop/api"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/seats"
	"github.com/comfy-workshop/workshop/store"
)

// roomEnv is a server with seats (2, or nSeats), an output store and the
// activity log, as the admin page uses it.
type roomEnv struct {
	*env
	files *store.Files
	seats *seats.Service
	log   *activity.Log
	acts  *sched.Subscription // the log's entries as they are recorded
}

func startRoom(t *testing.T, publicURL string, nSeats ...int) *roomEnv {
	t.Helper()
	n := 2
	if len(nSeats) > 0 {
		n = nSeats[0]
	}
	r := &roomEnv{}
	ctx, cancel := context.WithCancel(context.Background())
	r.env = startWith(t, sched.Config{Mode: workshop.ModeFIFO}, func(c *api.Config, db *store.DB, dir string) {
		files, err := store.NewFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		r.files, r.seats = files, seats.New(db)
		if err := r.seats.Ensure(ctx, n); err != nil {
			t.Fatal(err)
		}
		r.log = activity.New(db, c.Queue.Events(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		r.acts = c.Queue.Events().Subscribe(4096, func(e sched.Event) bool { return e.Type == activity.EventActivity })
		go r.log.Run(ctx)
		c.Files, c.Seats, c.PublicURL = files, r.seats, publicURL
		c.Activity, c.ActivityList, c.JobActivity = r.log.Record, r.log.List, r.log.OfJob
	})
	t.Cleanup(func() { cancel(); r.acts.Close() })
	return r
}

// finish runs a job to completion with one output file called name.
func (e *roomEnv) finish(user, name string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.q.Submit(ctx, sched.Submission{UserID: user, Workflow: json.RawMessage(graph)}); err != nil {
		e.t.Fatal(err)
	}
	j, err := e.q.Lease(ctx, "w", time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	saved, err := e.files.Save(store.Outputs, user, j.ID, name, strings.NewReader("image of "+j.ID), 1<<20)
	if err != nil {
		e.t.Fatal(err)
	}
	out := workshop.Output{Name: name, Filename: name, Type: "output", Size: saved.Size}
	if _, err := e.q.Complete(ctx, j.ID, "w", &workshop.Result{Outputs: []workshop.Output{out}}); err != nil {
		e.t.Fatal(err)
	}
}

// Eight outputs of one seat with the engine's same file name, made within
// the same minute (their job ids share the first 8 characters), are eight
// entries with eight names in the outputs zip.
func TestOutputsZipNamesAreDistinct(t *testing.T) {
	e := startRoom(t, "")
	name := "Zoë / Bo"
	if _, err := e.seats.Update(context.Background(), 2, seats.SeatUpdate{Name: &name}); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		e.finish("user002", "ComfyUI_00001_.png")
	}
	e.finish("user001", "ComfyUI_00001_.png")
	e.finish("user001", "ComfyUI_00001_.png")
	resp, err := http.DefaultClient.Do(e.authed("GET", "/api/export/outputs.zip"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("%d: %v", resp.StatusCode, err)
	}
	names := map[string]bool{}
	seat2 := 0
	for _, f := range zr.File {
		names[f.Name] = true
		if strings.HasPrefix(f.Name, "seat-002 Zoë _ Bo/job-") {
			seat2++
		}
		rc, _ := f.Open()
		content, _ := io.ReadAll(rc)
		rc.Close()
		if !strings.HasPrefix(string(content), "image of ") {
			t.Errorf("%s holds %q", f.Name, content)
		}
	}
	if len(zr.File) != 10 || len(names) != 10 || seat2 != 8 {
		t.Errorf("%d entries, %d names, %d in seat 2's folder: %v", len(zr.File), len(names), seat2, names)
	}
	for _, want := range []string{"seat-001/job-0009_ComfyUI_00001_.png", "seat-002 Zoë _ Bo/job-0001_ComfyUI_00001_.png"} {
		if !names[want] {
			t.Errorf("no %s in %v", want, names)
		}
	}
}

func (e *env) authed(method, path string) *http.Request {
	req, _ := http.NewRequest(method, e.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// Join links follow --public-url; links that only this machine can open
// come with a warning the admin page shows.
func TestJoinLinksAndLoopbackWarning(t *testing.T) {
	type seatList struct {
		Seats []struct {
			JoinURL string `json:"join_url"`
		} `json:"seats"`
		Base    string `json:"join_base"`
		Warning string `json:"join_warning"`
	}
	local := startRoom(t, "")
	var got seatList
	if st := local.call("GET", "/api/seats", "", &got); st != 200 || len(got.Seats) != 2 {
		t.Fatalf("%d %+v", st, got)
	}
	if !strings.HasPrefix(got.Seats[0].JoinURL, local.base+"/join/") || got.Base != local.base ||
		!strings.Contains(got.Warning, "127.0.0.1") || !strings.Contains(got.Warning, "--public-url") {
		t.Errorf("through 127.0.0.1: %+v", got)
	}
	public := startRoom(t, "https://workshop.example.org")
	got = seatList{}
	public.call("GET", "/api/seats", "", &got)
	if !strings.HasPrefix(got.Seats[0].JoinURL, "https://workshop.example.org/join/") || got.Warning != "" {
		t.Errorf("with a public URL: %+v", got)
	}
	var one struct {
		JoinURL string `json:"join_url"`
	}
	public.call("PATCH", "/api/seats/1", `{"name":"Al"}`, &one)
	if !strings.HasPrefix(one.JoinURL, "https://workshop.example.org/join/") {
		t.Errorf("one seat's link: %q", one.JoinURL)
	}
}
