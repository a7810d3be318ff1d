package sched_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

var graph = json.RawMessage(`{"1":{"class_type":"EmptyImage","inputs":{"width":64,"height":64,"batch_size":1,"color":0}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"t"}}}`)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openQueue(t testing.TB, dir string, cfg sched.Config) (*sched.Queue, *store.DB) {
	t.Helper()
	db, err := store.Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg.Log = quiet
	q, err := sched.Open(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q, db
}

// submit queues one job for user, tagging it with label in its metadata.
func submit(t *testing.T, q *sched.Queue, user, label string, prio ...int) *workshop.Job {
	t.Helper()
	s := sched.Submission{UserID: user, Workflow: graph, Metadata: json.RawMessage(fmt.Sprintf(`{"label":%q}`, label))}
	if len(prio) > 0 {
		s.Priority = &prio[0]
	}
	j, err := q.Submit(context.Background(), s)
	if err != nil {
		t.Fatalf("submit %s: %v", label, err)
	}
	return j
}

func label(j *workshop.Job) string {
	var m struct{ Label string }
	json.Unmarshal(j.Metadata, &m)
	return m.Label
}

// drain leases every pending job and returns their labels in dispatch order.
func drain(t *testing.T, q *sched.Queue) []string {
	t.Helper()
	var got []string
	for {
		st := q.Status()
		if st.Counts[workshop.StatusPending] == 0 {
			return got
		}
		j, err := q.Lease(context.Background(), "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, label(j))
	}
}

// pendingOrder lists pending jobs as the API does.
func pendingOrder(t *testing.T, q *sched.Queue) []string {
	t.Helper()
	jobs, _, err := q.List(sched.ListFilter{Status: workshop.StatusPending, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, j := range jobs {
		if j.Position != i+1 {
			t.Errorf("%s at index %d has position %d", label(j), i, j.Position)
		}
		got = append(got, label(j))
	}
	return got
}

func TestWorkedExample(t *testing.T) {
	for _, tc := range []struct {
		mode workshop.QueueMode
		want string
	}{
		{workshop.ModeRoundRobin, "A1 B1 C1 A2 A3 A4 A5"},
		{workshop.ModeFIFO, "A1 A2 A3 A4 A5 B1 C1"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			q, _ := openQueue(t, t.TempDir(), sched.Config{Mode: tc.mode})
			var positions []string
			for i := 1; i <= 5; i++ {
				j := submit(t, q, "A", fmt.Sprintf("A%d", i))
				positions = append(positions, fmt.Sprint(j.Position))
			}
			b := submit(t, q, "B", "B1")
			c := submit(t, q, "C", "C1")
			positions = append(positions, fmt.Sprint(b.Position), fmt.Sprint(c.Position))
			if got := strings.Join(pendingOrder(t, q), " "); got != tc.want {
				t.Errorf("listed order %s, want %s", got, tc.want)
			}
			// Each submission's position must match where the full order puts
			// it right after that submission.
			wantPos := map[workshop.QueueMode]string{
				workshop.ModeRoundRobin: "1 2 3 4 5 2 3",
				workshop.ModeFIFO:       "1 2 3 4 5 6 7",
			}[tc.mode]
			if got := strings.Join(positions, " "); got != wantPos {
				t.Errorf("positions at submit %s, want %s", got, wantPos)
			}
			if got := strings.Join(drain(t, q), " "); got != tc.want {
				t.Errorf("dispatched %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPriorityFirstThenMode(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{Mode: workshop.ModeRoundRobin})
	submit(t, q, "A", "A1")
	submit(t, q, "A", "A2")
	submit(t, q, "B", "B1", 3)
	submit(t, q, "C", "C1")
	submit(t, q, "I", "I1", 0)
	submit(t, q, "B", "B2", 1)
	submit(t, q, "I", "I2", 0)
	want := "I1 I2 B2 A1 C1 A2 B1"
	if got := strings.Join(pendingOrder(t, q), " "); got != want {
		t.Errorf("order %s, want %s", got, want)
	}
	if got := strings.Join(drain(t, q), " "); got != want {
		t.Errorf("dispatched %s, want %s", got, want)
	}
}

// A participant served by a high-priority job goes to the back of the
// rotation of the lower classes too.
func TestRoundRobinRotationAcrossClasses(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{Mode: workshop.ModeRoundRobin})
	submit(t, q, "A", "A1")
	submit(t, q, "B", "B1")
	submit(t, q, "A", "A0", 0)
	want := "A0 B1 A1"
	if got := strings.Join(pendingOrder(t, q), " "); got != want {
		t.Errorf("order %s, want %s", got, want)
	}
	if got := strings.Join(drain(t, q), " "); got != want {
		t.Errorf("dispatched %s, want %s", got, want)
	}
}

// Round-robin remembers who was served, also across restarts: after A is
// served, B's later job goes before A's next one.
func TestRoundRobinMemorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	q, db := openQueue(t, dir, sched.Config{Mode: workshop.ModeRoundRobin})
	submit(t, q, "A", "A1")
	if got := drain(t, q); len(got) != 1 {
		t.Fatal(got)
	}
	submit(t, q, "A", "A2")
	submit(t, q, "B", "B1")
	db.Close()
	q2, _ := openQueue(t, dir, sched.Config{Mode: workshop.ModeRoundRobin})
	if got := strings.Join(drain(t, q2), " "); got != "B1 A2" {
		t.Errorf("after restart dispatched %s, want B1 A2", got)
	}
}

func TestTiesBreakBySubmissionOrder(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{Mode: workshop.ModeRoundRobin})
	// Never-served participants go by their oldest pending job.
	submit(t, q, "C", "C1")
	submit(t, q, "A", "A1")
	submit(t, q, "B", "B1")
	submit(t, q, "A", "A2")
	if got := strings.Join(drain(t, q), " "); got != "C1 A1 B1 A2" {
		t.Errorf("dispatched %s", got)
	}
}

func TestPauseHoldsDispatch(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{})
	ctx := context.Background()
	if err := q.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	submit(t, q, "A", "A1")
	leased := make(chan *workshop.Job)
	go func() {
		j, err := q.Lease(ctx, "w", time.Minute)
		if err != nil {
			t.Error(err)
		}
		leased <- j
	}()
	// The lease must not happen while paused; the queue's state is checked
	// instead of waiting on a timer.
	select {
	case <-leased:
		t.Fatal("leased while paused")
	default:
	}
	if st := q.Status(); !st.Paused || st.Counts[workshop.StatusPending] != 1 {
		t.Fatalf("status %+v", st)
	}
	if err := q.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if j := <-leased; label(j) != "A1" {
		t.Errorf("leased %s", label(j))
	}
}

func TestPauseSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	q, db := openQueue(t, dir, sched.Config{})
	ctx := context.Background()
	if err := q.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.SetMode(ctx, workshop.ModeFIFO); err != nil {
		t.Fatal(err)
	}
	db.Close()
	q2, _ := openQueue(t, dir, sched.Config{Mode: workshop.ModeRoundRobin})
	if st := q2.Status(); !st.Paused || st.Mode != workshop.ModeFIFO {
		t.Errorf("after restart %+v", st)
	}
}

func code(err error) string { return workshop.ErrorCode(err) }

func TestTransitions(t *testing.T) {
	ctx := context.Background()
	q, _ := openQueue(t, t.TempDir(), sched.Config{MaxAttempts: 2})

	// pending: no complete/fail/requeue/extend (not leased).
	p := submit(t, q, "A", "p")
	if _, err := q.Complete(ctx, p.ID, "w", nil); code(err) != workshop.ECONFLICT {
		t.Errorf("complete pending: %v", err)
	}
	if _, err := q.Fail(ctx, p.ID, "w", nil); code(err) != workshop.ECONFLICT {
		t.Errorf("fail pending: %v", err)
	}
	if _, err := q.Requeue(ctx, p.ID, "w", "x"); code(err) != workshop.ECONFLICT {
		t.Errorf("requeue pending: %v", err)
	}
	if err := q.Extend(ctx, p.ID, "w", time.Minute); code(err) != workshop.ECONFLICT {
		t.Errorf("extend pending: %v", err)
	}
	// running: priority is refused; another worker cannot finish it.
	r, err := q.Lease(ctx, "w1", time.Minute)
	if err != nil || r.ID != p.ID || r.Status != workshop.StatusRunning || r.Attempts != 1 || r.StartedAt != nil {
		t.Fatalf("lease: %+v %v", r, err)
	}
	if err := q.Started(ctx, r.ID, "w2"); code(err) != workshop.ECONFLICT {
		t.Errorf("started by other worker: %v", err)
	}
	if err := q.Started(ctx, r.ID, "w1"); err != nil {
		t.Fatal(err)
	}
	if got := q.LeasedBy("w1"); len(got) != 1 || got[0].ID != r.ID || got[0].StartedAt == nil {
		t.Errorf("leased by w1: %+v", got)
	}
	if _, err := q.SetPriority(ctx, r.ID, 0); code(err) != workshop.ECONFLICT {
		t.Errorf("priority of running: %v", err)
	}
	if _, err := q.Complete(ctx, r.ID, "w2", nil); code(err) != workshop.ECONFLICT {
		t.Errorf("complete by other worker: %v", err)
	}
	done, err := q.Complete(ctx, r.ID, "w1", &workshop.Result{Outputs: []workshop.Output{{Filename: "a.png"}}})
	if err != nil || done.Status != workshop.StatusCompleted || done.CompletedAt == nil {
		t.Fatalf("complete: %+v %v", done, err)
	}
	// completed: everything is refused, nothing changes.
	for name, f := range map[string]func() error{
		"cancel":   func() error { _, err := q.Cancel(ctx, r.ID, ""); return err },
		"priority": func() error { _, err := q.SetPriority(ctx, r.ID, 1); return err },
		"complete": func() error { _, err := q.Complete(ctx, r.ID, "w1", nil); return err },
		"fail":     func() error { _, err := q.Fail(ctx, r.ID, "w1", nil); return err },
		"requeue":  func() error { _, err := q.Requeue(ctx, r.ID, "w1", "x"); return err },
	} {
		if err := f(); code(err) != workshop.ECONFLICT {
			t.Errorf("%s of completed: %v", name, err)
		}
	}
	if j, _ := q.Get(r.ID); j.Status != workshop.StatusCompleted || len(j.Result.Outputs) != 1 {
		t.Errorf("completed job changed: %+v", j)
	}
	// Unknown ids are not found.
	if _, err := q.Cancel(ctx, "0190c0de-0000-7000-8000-000000000000", ""); code(err) != workshop.ENOTFOUND {
		t.Errorf("cancel unknown: %v", err)
	}

	// Requeue goes back to pending, and fails after MaxAttempts.
	x := submit(t, q, "B", "x")
	l1, _ := q.Lease(ctx, "w", time.Minute)
	if l1.ID != x.ID {
		t.Fatal("leased wrong job")
	}
	rq, err := q.Requeue(ctx, x.ID, "w", "tunnel lost")
	if err != nil || rq.Status != workshop.StatusPending || rq.Position != 1 {
		t.Fatalf("requeue: %+v %v", rq, err)
	}
	q.Lease(ctx, "w", time.Minute)
	f, err := q.Requeue(ctx, x.ID, "w", "tunnel lost")
	if err != nil || f.Status != workshop.StatusFailed || !strings.Contains(f.Error.Message, "2 attempts") {
		t.Fatalf("requeue at max attempts: %+v %v", f, err)
	}

	// Release gives a lease back without using an attempt.
	y := submit(t, q, "D", "y")
	q.Lease(ctx, "w", time.Minute)
	if r, err := q.Release(ctx, y.ID, "w", "drained"); err != nil || r.Status != workshop.StatusPending || r.Attempts != 0 {
		t.Fatalf("release: %+v %v", r, err)
	}
	if _, err := q.Release(ctx, y.ID, "w", "again"); code(err) != workshop.ECONFLICT {
		t.Errorf("release of a pending job: %v", err)
	}
	if _, err := q.Cancel(ctx, y.ID, ""); err != nil {
		t.Fatal(err)
	}

	// Cancel a running job: its worker can no longer complete it.
	c := submit(t, q, "C", "c")
	q.Lease(ctx, "w", time.Minute)
	if _, err := q.Cancel(ctx, c.ID, "instructor"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Complete(ctx, c.ID, "w", nil); code(err) != workshop.ECONFLICT {
		t.Errorf("complete after cancel: %v", err)
	}
	st := q.Status()
	if st.Counts[workshop.StatusCompleted] != 1 || st.Counts[workshop.StatusFailed] != 1 || st.Counts[workshop.StatusCancelled] != 2 {
		t.Errorf("counts %+v", st.Counts)
	}
}

func TestStatusTransitionTable(t *testing.T) {
	all := []workshop.JobStatus{workshop.StatusPending, workshop.StatusRunning, workshop.StatusCompleted, workshop.StatusFailed, workshop.StatusCancelled}
	allowed := map[[2]workshop.JobStatus]bool{
		{"pending", "running"}: true, {"pending", "cancelled"}: true,
		{"running", "pending"}: true, {"running", "completed"}: true, {"running", "failed"}: true, {"running", "cancelled"}: true,
	}
	for _, a := range all {
		for _, b := range all {
			if got := a.CanMove(b); got != allowed[[2]workshop.JobStatus{a, b}] {
				t.Errorf("%s -> %s: %v", a, b, got)
			}
		}
	}
}

func TestMaxPendingAndQuota(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{MaxPending: 2})
	submit(t, q, "A", "1")
	submit(t, q, "A", "2")
	_, err := q.Submit(context.Background(), sched.Submission{UserID: "A", Workflow: graph})
	if code(err) != workshop.ETOOMANY {
		t.Fatalf("third job: %v", err)
	}
	submit(t, q, "B", "other users are not affected")
	q.SetQuota("A", 3)
	submit(t, q, "A", "3")
	if st := q.Status(); st.Counts[workshop.StatusPending] != 4 {
		t.Errorf("pending %d", st.Counts[workshop.StatusPending])
	}
}

// The quota message names the seat, not the participant's id, in good
// English for one job and for several.
func TestQuotaMessage(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{MaxPending: 2})
	q.SetQuota("user007", 1)
	for user, want := range map[string]string{
		"user007": "seat 7 already has 1 job waiting, the most it may queue: wait until it starts",
		"user002": "seat 2 already has 2 jobs waiting, the most it may queue: wait until one starts",
		"api-bot": "api-bot already has 2 jobs waiting",
	} {
		var err error
		for i := 0; err == nil && i < 3; i++ {
			_, err = q.Submit(context.Background(), sched.Submission{UserID: user, Workflow: graph})
		}
		if code(err) != workshop.ETOOMANY || !strings.Contains(workshop.ErrorMessage(err), want) {
			t.Errorf("%s: %v, want %q", user, err, want)
		}
	}
}

func TestSubmitValidation(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{})
	bad := []sched.Submission{
		{UserID: "", Workflow: graph},
		{UserID: "../etc", Workflow: graph},
		{UserID: "a", Workflow: nil},
		{UserID: "a", Workflow: json.RawMessage(`[]`)},
		{UserID: "a", Workflow: json.RawMessage(`{}`)},
		{UserID: "a", Workflow: json.RawMessage(`{"1":{"inputs":{}}}`)},
		{UserID: "a", Workflow: json.RawMessage(`{"1":"x"}`)},
		{UserID: "a", Workflow: json.RawMessage(`{"1":{"class_type":"X","inputs":[]}}`)},
		{UserID: "a", Workflow: graph, Priority: ptr(4)},
		{UserID: "a", Workflow: graph, Priority: ptr(-1)},
		{UserID: "a", Workflow: graph, Metadata: json.RawMessage(`{"x":` + strings.Repeat(" ", workshop.MaxMetadataSize) + `1}`)},
	}
	for i, s := range bad {
		if _, err := q.Submit(context.Background(), s); code(err) != workshop.EINVALID && code(err) != workshop.ETOOLARGE {
			t.Errorf("case %d: %v", i, err)
		}
	}
	if st := q.Status(); st.Counts[workshop.StatusPending] != 0 {
		t.Errorf("bad submissions changed the queue: %+v", st)
	}
}

func ptr(n int) *int { return &n }

func TestLeaseExpiryRequeues(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	q, _ := openQueue(t, t.TempDir(), sched.Config{Now: clock})
	ctx := context.Background()
	j := submit(t, q, "A", "a")
	q.Lease(ctx, "w", time.Minute)
	if got := q.ExpireLeases(ctx); len(got) != 0 {
		t.Fatalf("expired early: %v", got)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if got := q.ExpireLeases(ctx); len(got) != 1 || got[0] != j.ID {
		t.Fatalf("expired %v", got)
	}
	g, _ := q.Get(j.ID)
	if g.Status != workshop.StatusPending || g.Attempts != 1 || g.Error == nil || g.Worker != "" {
		t.Errorf("after expiry %+v", g)
	}
	// Requeued is pending everywhere: the counts, the worker's leases, the
	// list of lease holders.
	if c := q.Status().Counts; c[workshop.StatusRunning] != 0 || c[workshop.StatusPending] != 1 {
		t.Errorf("counts after expiry %v", c)
	}
	if ids, _ := q.Leases("w"); len(ids) != 0 || len(q.LeaseHolders()) != 0 {
		t.Errorf("after expiry w holds %v; holders %v", ids, q.LeaseHolders())
	}
	// Out of attempts, it fails where it last ran.
	for range 2 {
		q.Lease(ctx, "w2", time.Minute)
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		q.ExpireLeases(ctx)
	}
	if g, _ := q.Get(j.ID); g.Status != workshop.StatusFailed || g.Error.Type != "attempts_exhausted" || g.Worker != "w2" {
		t.Errorf("out of attempts: %s on %q (%+v)", g.Status, g.Worker, g.Error)
	}
}

// Reads show the lease as it is in memory (renewals are not written), and
// a job whose lease ran out is not shown as running, even before the sweep
// requeues it.
func TestReadsShowTheLiveLease(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	q, _ := openQueue(t, t.TempDir(), sched.Config{Now: clock})
	ctx := context.Background()
	j := submit(t, q, "A", "a")
	q.Lease(ctx, "w", time.Minute)
	advance(50 * time.Second)
	if err := q.Extend(ctx, j.ID, "w", time.Minute); err != nil {
		t.Fatal(err)
	}
	advance(20 * time.Second) // past the first lease, within the renewed one
	g, _ := q.Get(j.ID)
	if g.Status != workshop.StatusRunning || g.LeaseExpires == nil || !g.LeaseExpires.Equal(clock().Add(40*time.Second)) {
		t.Errorf("renewed lease read as %s until %v", g.Status, g.LeaseExpires)
	}
	advance(time.Minute)
	g, _ = q.Get(j.ID)
	mine := q.Mine("A", false)
	listed, _, _ := q.List(sched.ListFilter{UserID: "A"})
	for _, r := range []*workshop.Job{g, mine[0], listed[0]} {
		if r.Status != workshop.StatusPending || r.LeaseExpires != nil || r.Worker != "" {
			t.Errorf("expired lease read as %s (worker %q, until %v)", r.Status, r.Worker, r.LeaseExpires)
		}
	}
}

func TestCancelAndPriorityChangeOrder(t *testing.T) {
	ctx := context.Background()
	q, _ := openQueue(t, t.TempDir(), sched.Config{Mode: workshop.ModeFIFO})
	a := submit(t, q, "A", "a")
	b := submit(t, q, "B", "b")
	c := submit(t, q, "C", "c")
	if _, err := q.Cancel(ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	m, err := q.SetPriority(ctx, c.ID, 0)
	if err != nil || m.Position != 1 {
		t.Fatalf("move to top: %+v %v", m, err)
	}
	if got := strings.Join(pendingOrder(t, q), " "); got != "c b" {
		t.Errorf("order %s", got)
	}
	if g, _ := q.Get(b.ID); g.Position != 2 {
		t.Errorf("b position %d", g.Position)
	}
}

// Everything acknowledged survives a reopen, with its state.
func TestReopenKeepsJobs(t *testing.T) {
	dir := t.TempDir()
	q, db := openQueue(t, dir, sched.Config{Mode: workshop.ModeFIFO})
	ctx := context.Background()
	var ids []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			j, err := q.Submit(ctx, sched.Submission{UserID: fmt.Sprintf("u%d", i%7), Workflow: graph})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids = append(ids, j.ID)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	leased, _ := q.Lease(ctx, "w", time.Minute)
	db.Close()

	q2, _ := openQueue(t, dir, sched.Config{Mode: workshop.ModeFIFO})
	for _, id := range ids {
		j, err := q2.Get(id)
		if err != nil {
			t.Fatalf("job %s lost: %v", id, err)
		}
		if id == leased.ID && j.Status != workshop.StatusRunning {
			t.Errorf("leased job is %s", j.Status)
		}
	}
	st := q2.Status()
	if st.Counts[workshop.StatusPending] != 49 || st.Counts[workshop.StatusRunning] != 1 {
		t.Errorf("counts %+v", st.Counts)
	}
	// Numbers continue after the restart.
	n := submit(t, q2, "z", "new")
	if n.Seq != 51 {
		t.Errorf("seq after restart %d", n.Seq)
	}
}

func TestEventsPublished(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{})
	sub := q.Events().Subscribe(16, nil)
	defer sub.Close()
	j := submit(t, q, "A", "a")
	e := <-sub.C
	if e.Type != sched.EventJobCreated || e.Job.ID != j.ID || e.Job.Workflow != nil {
		t.Errorf("first event %+v", e)
	}
	q.Cancel(context.Background(), j.ID, "")
	if e := <-sub.C; e.Type != sched.EventJobUpdated || e.Job.Status != workshop.StatusCancelled {
		t.Errorf("second event %+v", e)
	}
	q.Pause(context.Background())
	if e := <-sub.C; e.Type != sched.EventQueueChanged || !e.Queue.Paused {
		t.Errorf("third event %+v", e)
	}
}

func TestListPagination(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{Mode: workshop.ModeFIFO})
	for i := 0; i < 7; i++ {
		submit(t, q, fmt.Sprintf("u%d", i%2), fmt.Sprint(i))
	}
	var got []string
	cursor := ""
	for {
		jobs, next, err := q.List(sched.ListFilter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			got = append(got, label(j))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if s := strings.Join(got, ""); s != "6543210" {
		t.Errorf("newest first: %s", s)
	}
	got = nil
	cursor = ""
	for {
		jobs, next, err := q.List(sched.ListFilter{Limit: 2, Cursor: cursor, UserID: "u1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			got = append(got, label(j))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if s := strings.Join(got, ""); s != "531" {
		t.Errorf("user filter: %s", s)
	}
	got = nil
	cursor = ""
	for {
		jobs, next, err := q.List(sched.ListFilter{Limit: 3, Cursor: cursor, Status: workshop.StatusPending})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			got = append(got, fmt.Sprintf("%s@%d", label(j), j.Position))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if s := strings.Join(got, " "); s != "0@1 1@2 2@3 3@4 4@5 5@6 6@7" {
		t.Errorf("pending pages: %s", s)
	}
	if _, _, err := q.List(sched.ListFilter{Status: "bogus"}); code(err) != workshop.EINVALID {
		t.Errorf("bad status: %v", err)
	}
	if _, _, err := q.List(sched.ListFilter{Cursor: "nope"}); !errors.Is(err, err) || code(err) != workshop.EINVALID {
		t.Errorf("bad cursor: %v", err)
	}
}

// After a restart, running jobs keep their leases for the restart grace, so
// their workers can come back and reconcile.
func TestRestartGraceKeepsLeases(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	q, db := openQueue(t, dir, sched.Config{Now: clock})
	ctx := context.Background()
	submit(t, q, "A", "a")
	q.Lease(ctx, "w", time.Second)
	db.Close()
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	q2, _ := openQueue(t, dir, sched.Config{Now: clock, RestartGrace: time.Minute})
	if got := q2.ExpireLeases(ctx); len(got) != 0 {
		t.Fatalf("expired within the restart grace: %v", got)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if got := q2.ExpireLeases(ctx); len(got) != 1 {
		t.Fatalf("after the grace: %v", got)
	}
}

func TestMoveToTopAndRetry(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []workshop.QueueMode{workshop.ModeRoundRobin, workshop.ModeFIFO} {
		dir := t.TempDir()
		q, db := openQueue(t, dir, sched.Config{Mode: mode})
		submit(t, q, "A", "a")
		submit(t, q, "I", "i", 0)
		b := submit(t, q, "B", "b")
		c := submit(t, q, "C", "c")
		if _, err := q.MoveToTop(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		m, err := q.MoveToTop(ctx, c.ID)
		if err != nil || m.Position != 1 || m.Top != 2 {
			t.Fatalf("move c: %+v %v", m, err)
		}
		// The latest move goes first, then the earlier one, then priorities.
		if got := strings.Join(pendingOrder(t, q), " "); got != "c b i a" {
			t.Errorf("%s: order %s", mode, got)
		}
		// A priority change takes a job out of the moved ones.
		q.SetPriority(ctx, b.ID, 3)
		if got := strings.Join(pendingOrder(t, q), " "); got != "c i a b" {
			t.Errorf("%s: after priority %s", mode, got)
		}
		db.Close()
		q2, _ := openQueue(t, dir, sched.Config{Mode: mode})
		if got := strings.Join(pendingOrder(t, q2), " "); got != "c i a b" {
			t.Errorf("%s: after restart %s", mode, got)
		}
		j, _ := q2.Lease(ctx, "w", time.Minute)
		if _, err := q2.MoveToTop(ctx, j.ID); code(err) != workshop.ECONFLICT {
			t.Errorf("move of a running job: %v", err)
		}
		if _, err := q2.Retry(ctx, j.ID); code(err) != workshop.ECONFLICT {
			t.Errorf("retry of a running job: %v", err)
		}
		q2.Fail(ctx, j.ID, "w", &workshop.JobError{Type: "x", Message: "boom"})
		r, err := q2.Retry(ctx, j.ID)
		if err != nil || r.ID == j.ID || r.UserID != j.UserID || r.Status != workshop.StatusPending {
			t.Errorf("retry: %+v %v", r, err)
		}
	}
}

// Every way of asking where a participant stands agrees with the order the
// queue actually dispatches in: Mine's positions, Place and Places.
// With mixed priorities, one priority alone (the usual queue) and the
// instructor's class alone (first in, first out), Places and positions
// must agree with dispatch.
func TestPlacesAgreeWithDispatch(t *testing.T) {
	classes := []struct {
		name  string
		prios []int
	}{{"mixed", []int{2, 2, 1, 3}}, {"default", []int{2, 2, 2, 2}}, {"instructor", []int{0, 0, 0, 0}}}
	for _, mode := range []workshop.QueueMode{workshop.ModeRoundRobin, workshop.ModeFIFO} {
		for _, cl := range classes {
			t.Run(string(mode)+"/"+cl.name, func(t *testing.T) { placesAgreeWithDispatch(t, mode, cl.prios) })
		}
	}
}

func placesAgreeWithDispatch(t *testing.T, mode workshop.QueueMode, prios []int) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{Mode: mode})
	ctx := context.Background()
	users := []string{"ann", "bob", "cat", "dan"}
	var moved *workshop.Job
	for i := range 14 {
		j := submit(t, q, users[i*7%4], fmt.Sprint(i), prios[i%4])
		if i == 9 {
			moved = j
		}
	}
	if _, err := q.MoveToTop(ctx, moved.ID); err != nil {
		t.Fatal(err)
	}
	// Two running jobs, one cancelled pending one.
	for range 2 {
		if _, err := q.Lease(ctx, "w", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	cancelled := q.Mine("cat", false)
	if _, err := q.Cancel(ctx, cancelled[len(cancelled)-1].ID, ""); err != nil {
		t.Fatal(err)
	}

	// Reads between changes rebuild the order once they have walked enough
	// (position): no answer may change when that happens.
	first := map[string]int{}
	for round := range 30 {
		for _, u := range users {
			for _, j := range q.Mine(u, false) {
				if round == 0 {
					first[j.ID] = j.Position
				} else if j.Position != first[j.ID] {
					t.Fatalf("read %d: %s at %d, first read at %d", round, label(j), j.Position, first[j.ID])
				}
			}
		}
	}
	places := q.Places()
	byPos := map[int]string{}
	for _, u := range users {
		mine := q.Mine(u, false)
		pending, running := q.Counts(u)
		want := sched.Place{}
		lastPos := 0
		for i, j := range mine {
			if j.Status == workshop.StatusRunning {
				want.Running++
				if i > 0 && mine[i-1].Status != workshop.StatusRunning {
					t.Errorf("%s: running job after a pending one", u)
				}
				continue
			}
			want.Pending++
			if j.Position <= lastPos {
				t.Errorf("%s: positions not increasing: %d after %d", u, j.Position, lastPos)
			}
			lastPos = j.Position
			if want.Position == 0 {
				want.Position = j.Position
			}
			byPos[j.Position] = j.ID
		}
		if got := q.Place(u); got.Pending != want.Pending || got.Running != want.Running || got.Position != want.Position {
			t.Errorf("Place(%s) = %+v, want %+v", u, got, want)
		}
		if got := places[u]; got.Pending != want.Pending || got.Running != want.Running || got.Position != want.Position {
			t.Errorf("Places()[%s] = %+v, want %+v", u, got, want)
		}
		if pending != want.Pending || running != want.Running {
			t.Errorf("Counts(%s) = %d, %d, want %+v", u, pending, running, want)
		}
	}
	for k := 1; k <= len(byPos); k++ {
		j, err := q.Lease(ctx, "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if j.ID != byPos[k] {
			t.Fatalf("lease %d got %s (%s), but position %d was %s", k, j.ID, j.UserID, k, byPos[k])
		}
	}
}

// Each participant's jobs are numbered 1, 2, 3... on their own, whoever
// else queues, and the numbering goes on after a restart.
func TestUserNumbers(t *testing.T) {
	dir := t.TempDir()
	q, db := openQueue(t, dir, sched.Config{})
	got := func(j *workshop.Job) uint64 { return j.UserSeq }
	a1, b1, a2 := submit(t, q, "a", "a1"), submit(t, q, "b", "b1"), submit(t, q, "a", "a2")
	if got(a1) != 1 || got(b1) != 1 || got(a2) != 2 || a2.Seq != 3 {
		t.Fatalf("numbers a1=%d b1=%d a2=%d (room-wide %d)", got(a1), got(b1), got(a2), a2.Seq)
	}
	if stored, err := q.Get(a2.ID); err != nil || stored.UserSeq != 2 {
		t.Fatalf("stored %+v %v", stored, err)
	}
	db.Close()
	q, _ = openQueue(t, dir, sched.Config{})
	if a3, b2 := submit(t, q, "a", "a3"), submit(t, q, "b", "b2"); got(a3) != 3 || got(b2) != 2 {
		t.Fatalf("after a restart: a3=%d b2=%d", got(a3), got(b2))
	}
}

// A job cancelled while its engine executes it records the node it was
// at (what ComfyUI's execution_interrupted names), whoever cancels it and
// however: one by one or in bulk. One cancelled before it started has none.
func TestCancelRecordsTheNode(t *testing.T) {
	ctx := context.Background()
	q, _ := openQueue(t, t.TempDir(), sched.Config{})
	running := func(label, node string) *workshop.Job {
		j := submit(t, q, "A", label)
		lease(t, q, "w")
		if err := q.Started(ctx, j.ID, "w"); err != nil {
			t.Fatal(err)
		}
		q.Executing(j.ID, "w", node)
		return j
	}
	where := func(j *workshop.Job) string {
		if j.Error == nil {
			return "no error"
		}
		return string(j.Error.Details)
	}
	one := running("one", "2")
	if got, err := q.Cancel(ctx, one.ID, "cancelled by the instructor"); err != nil || where(got) != `{"node_id":"2","node_type":"SaveImage"}` ||
		got.Error.Message != "cancelled by the instructor" {
		t.Errorf("cancelled while it executed node 2: %s %v", where(got), err)
	}
	bulk := running("bulk", "1")
	if _, err := q.CancelSelected(ctx, sched.Selector{IDs: []string{bulk.ID}}, "cancelled by the instructor"); err != nil {
		t.Fatal(err)
	}
	if got, _ := q.Get(bulk.ID); where(got) != `{"node_id":"1","node_type":"EmptyImage"}` {
		t.Errorf("cancelled in bulk while it executed node 1: %s", where(got))
	}
	waiting := submit(t, q, "A", "waiting")
	if got, err := q.Cancel(ctx, waiting.ID, ""); err != nil || got.Error == nil || got.Error.Details != nil {
		t.Errorf("cancelled before it ran: %s %v", where(got), err)
	}
}

// A participant served at a higher priority goes back in the rotation of
// the lower one: the position a submission is answered with counts that,
// as dispatch does.
func TestPositionAfterAHigherPriority(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{Mode: workshop.ModeRoundRobin})
	submit(t, q, "B", "b1", 2)
	submit(t, q, "A", "a1", 2)
	submit(t, q, "B", "b0", 1)
	c := submit(t, q, "C", "c1", 2)
	if c.Position != 3 {
		t.Errorf("c1 answered with position %d, want 3 (after b0 and a1; b1 waits, b0 served B)", c.Position)
	}
	for u, want := range map[string]int{"B": 1, "A": 2, "C": 3} {
		if got := q.Places()[u].Position; got != want {
			t.Errorf("Places()[%s].Position = %d, want %d", u, got, want)
		}
	}
	var got []string
	for range 4 {
		j, err := q.Lease(context.Background(), "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, label(j))
	}
	if strings.Join(got, " ") != "b0 a1 c1 b1" {
		t.Errorf("dispatched %v", got)
	}
}

// A participant's listing has every job of theirs at every moment: the
// index holds finished jobs only, so the queue names the active ones, and
// the ones finished in memory whose write is still committing.
func TestUserListingAcrossAFinish(t *testing.T) {
	q, _ := openQueue(t, t.TempDir(), sched.Config{})
	ctx := context.Background()
	first, second := submit(t, q, "u", "first"), submit(t, q, "u", "second")
	submit(t, q, "other", "theirs")
	list := func() string {
		t.Helper()
		jobs, total, err := q.UserJobs(store.UserJobsQuery{UserID: "u"})
		if err != nil {
			t.Fatal(err)
		}
		listed, _, err := q.List(sched.ListFilter{UserID: "u"})
		if err != nil {
			t.Fatal(err)
		}
		out := fmt.Sprint(total)
		for i, j := range jobs {
			out += fmt.Sprintf(" %s:%s", label(j), j.Status)
			if listed[i].ID != j.ID || listed[i].Status != j.Status {
				t.Errorf("List has %s:%s where UserJobs has %s", label(listed[i]), listed[i].Status, label(j))
			}
		}
		return out
	}
	if got := list(); got != "2 second:pending first:pending" {
		t.Errorf("pending: %s", got)
	}
	leased, err := q.Lease(ctx, "w", time.Minute)
	if err != nil || leased.ID != first.ID {
		t.Fatalf("lease: %v %v", leased, err)
	}
	if got := list(); got != "2 second:pending first:running" {
		t.Errorf("running: %s", got)
	}
	q.FinishUnwritten(first.ID)
	if got := list(); got != "2 second:pending first:running" {
		t.Errorf("finished in memory, its write not yet committed: %s", got)
	}
	q.Cancel(ctx, second.ID, "")
	if got := list(); got != "2 second:cancelled first:running" {
		t.Errorf("one cancelled: %s", got)
	}
}
