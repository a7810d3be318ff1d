// Package workshop holds the domain types shared by every part of ComfyUI
// Workshop: jobs, their states and the error codes. It knows nothing of
// HTTP, bbolt or ComfyUI's wire format; the packages below it do.
package workshop

import (
	"encoding/json"
	"time"
)

// JobStatus is where a job is in its life.
type JobStatus string

const (
	StatusPending   JobStatus = "pending"
	StatusRunning   JobStatus = "running"
	StatusCompleted JobStatus = "completed"
	StatusFailed    JobStatus = "failed"
	StatusCancelled JobStatus = "cancelled"
)

// Valid reports whether s is one of the five statuses.
func (s JobStatus) Valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// Finished reports whether s is terminal: nothing moves a job out of it.
func (s JobStatus) Finished() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// CanMove reports whether a job may go from s to next. Retrying a failed or
// cancelled job makes a new job, so terminal states have no way out.
func (s JobStatus) CanMove(next JobStatus) bool {
	switch s {
	case StatusPending:
		return next == StatusRunning || next == StatusCancelled
	case StatusRunning:
		// Back to pending is a requeue (lease lost, instance died).
		return next == StatusPending || next == StatusCompleted ||
			next == StatusFailed || next == StatusCancelled
	}
	return false
}

// Priorities: 0 is the instructor's, served first; 2 is everyone's default.
const (
	PriorityInstructor = 0
	PriorityDefault    = 2
	PriorityLowest     = 3
)

// Job is one ComfyUI graph to run for one participant.
type Job struct {
	ID  string `json:"id"`
	Seq uint64 `json:"number"` // submission order, ComfyUI's "number"
	// UserSeq is the job's number among its participant's own jobs (their
	// "job #3"), so a participant's UI does not tell how many jobs others
	// queued. 0 on jobs stored before it existed.
	UserSeq  uint64          `json:"user_number,omitempty"`
	UserID   string          `json:"user_id"`
	Workflow json.RawMessage `json:"workflow,omitempty"`
	Priority int             `json:"priority"`
	// Top is set when the instructor moved the job to the top of the queue:
	// the n-th such move (later moves go first).
	Top    int64     `json:"top,omitempty"`
	Status JobStatus `json:"status"`

	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	Attempts    int        `json:"attempts"`
	// Failures are the dispatches that ended for a reason on the GPU
	// instance's side (out of memory, a node it lacks, a crash), oldest
	// first. The job is not given to those instances again while another
	// can take it.
	Failures []Failure `json:"failures,omitempty"`

	// ExtraData is ComfyUI's extra_data of a prompt from a ComfyUI client
	// (the UI graph under extra_pnginfo), passed on to the engine.
	ExtraData json.RawMessage `json:"extra_data,omitempty"`
	// WorkflowID names the UI workflow the prompt was made from (the id
	// in its extra_data), which clients match jobs to open workflows by:
	// kept apart so listings never read the graph.
	WorkflowID string `json:"workflow_id,omitempty"`
	// Inputs are the participant's uploaded files the graph uses, shipped
	// to the engine with the job ("subfolder/name" or "name").
	Inputs []string `json:"inputs,omitempty"`

	Result   *Result         `json:"result,omitempty"`
	Error    *JobError       `json:"error,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`

	// Lease: which worker holds the job and until when. Set while running.
	Worker       string     `json:"worker,omitempty"`
	LeaseExpires *time.Time `json:"lease_expires_at,omitempty"`
	// EngineID is the id the engine knows the job by, when it is not the
	// job's id (ComfyUI before July 2025 ignores the id it is given).
	EngineID string `json:"engine_prompt_id,omitempty"`

	// Computed on read, never stored.
	Position   int      `json:"position,omitempty"`
	ETASeconds *float64 `json:"eta_seconds,omitempty"`
}

// Result is what a finished job produced.
type Result struct {
	Outputs []Output        `json:"outputs"`
	Raw     json.RawMessage `json:"raw,omitempty"` // the engine's own report, kept verbatim
	// Meta and Messages are the rest of the engine's history entry: each
	// output node's meta and the status messages (start, cached, success),
	// verbatim but for the prompt id, which is the job's.
	Meta     json.RawMessage `json:"meta,omitempty"`
	Messages json.RawMessage `json:"messages,omitempty"`
}

// Output is one file a job produced, as kept in the output store.
type Output struct {
	Node string `json:"node,omitempty"`
	// Name is the file's name in the output store, unique within the job
	// and used in its download URL.
	Name      string `json:"name"`
	Filename  string `json:"filename"` // as the engine named it
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	URL       string `json:"url,omitempty"`
}

// JobError says why a job failed or was cancelled.
type JobError struct {
	Type    string          `json:"type"`
	Message string          `json:"message"`
	Details json.RawMessage `json:"details,omitempty"`
}

// Failure is one dispatch of a job that an instance could not carry out.
type Failure struct {
	Worker string `json:"worker"`
	// Reason is a short code: out_of_memory, gpu_error, missing_node,
	// missing_model, lost (the instance crashed, restarted or went away).
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// QueueMode chooses the order of pending jobs within one priority.
type QueueMode string

const (
	ModeFIFO       QueueMode = "fifo"
	ModeRoundRobin QueueMode = "round-robin"
)

// ParseQueueMode accepts the spellings operators use.
func ParseQueueMode(s string) (QueueMode, error) {
	switch s {
	case "fifo", "FIFO":
		return ModeFIFO, nil
	case "round-robin", "round_robin", "roundrobin", "rr":
		return ModeRoundRobin, nil
	}
	return "", Errorf(EINVALID, "queue mode %q: want fifo or round-robin", s)
}
