package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Options configure Sync.
type Options struct {
	// Dir is the models directory (ComfyUI's models folder). It must exist.
	Dir string
	// Concurrency is how many files are checked or downloaded at once.
	// Default 2.
	Concurrency int
	// Client makes the requests. Default: a client with no overall timeout
	// (files are large), a 60 s response-header timeout and the environment's
	// proxy settings.
	Client *http.Client
	// Authorize, if set, may add credentials to each request (for example a
	// bearer token for a host of gated models).
	Authorize func(*http.Request)
	// UserAgent is sent with each request. Default "comfy-workshop-models".
	UserAgent string
	// Logger receives progress and results. Default slog.Default().
	Logger *slog.Logger
	// ProgressInterval is the time between progress lines. Default 5 s;
	// negative disables them.
	ProgressInterval time.Duration
	// Retries is how many attempts in a row may fail without receiving a
	// byte before a file is given up. Default 8.
	Retries int
	// RetryBackoff is the delay after the first failure; it doubles per
	// failure up to MaxBackoff. Defaults 1 s and 30 s.
	RetryBackoff, MaxBackoff time.Duration
	// StallTimeout aborts (and retries) a transfer that received nothing
	// for this long. Default 60 s.
	StallTimeout time.Duration
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 60 * time.Second
		o.Client = &http.Client{Transport: tr}
	}
	if o.UserAgent == "" {
		o.UserAgent = "comfy-workshop-models"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = 5 * time.Second
	}
	if o.Retries <= 0 {
		o.Retries = 8
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.RetryBackoff {
		o.MaxBackoff = o.RetryBackoff
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 60 * time.Second
	}
}

// State is the outcome for one file.
type State string

const (
	// StatePresent: the file was there with the right hash (or size, or
	// merely there, when the manifest gives neither).
	StatePresent State = "present"
	// StateDownloaded: the file was downloaded and verified in this run.
	StateDownloaded State = "downloaded"
	// StateFailed: the file is missing or wrong; Error says why.
	StateFailed State = "failed"
	// StateSkipped: the sync was cancelled before the file was done.
	StateSkipped State = "skipped"
)

// How a file was verified.
const (
	VerifiedCache    = "cache"    // hash taken from the hash cache (size and mtime unchanged)
	VerifiedHash     = "hash"     // the file was hashed
	VerifiedDownload = "download" // hashed while downloading
	VerifiedSize     = "size"     // no sha256 in the manifest; the size matched
	VerifiedNone     = "none"     // no sha256 and no size in the manifest
)

// FileStatus is the outcome for one manifest entry.
type FileStatus struct {
	// Path is folder/file, relative to the models directory.
	Path string `json:"path"`
	// URL is the entry's URL with secrets redacted.
	URL   string `json:"url"`
	State State  `json:"state"`
	// Size and SHA256 describe the file on disk (present or downloaded).
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Verified says how the file was checked (VerifiedCache, ...).
	Verified string `json:"verified,omitempty"`
	// Downloaded is the number of bytes received in this run.
	Downloaded int64 `json:"downloaded,omitempty"`
	// Error says why the file failed.
	Error string `json:"error,omitempty"`
	// Retryable is true for a failure that a later run may overcome
	// (network trouble), false for one that needs a fix (404, wrong hash,
	// full disk).
	Retryable bool `json:"retryable,omitempty"`

	Duration time.Duration `json:"-"`
}

// Report is the outcome of Sync, one FileStatus per entry in manifest order.
type Report struct {
	Files   []FileStatus
	Elapsed time.Duration
}

// Count returns the number of files in state s.
func (r *Report) Count(s State) int {
	n := 0
	for _, f := range r.Files {
		if f.State == s {
			n++
		}
	}
	return n
}

// Missing returns the files that are not in place (failed or skipped).
func (r *Report) Missing() []FileStatus {
	var out []FileStatus
	for _, f := range r.Files {
		if f.State != StatePresent && f.State != StateDownloaded {
			out = append(out, f)
		}
	}
	return out
}

// Permanent reports whether a failed file needs a fix rather than a retry.
func (r *Report) Permanent() bool {
	for _, f := range r.Files {
		if f.State == StateFailed && !f.Retryable {
			return true
		}
	}
	return false
}

// Err returns nil when every file is in place, else an error naming each
// missing file, its URL and the reason.
func (r *Report) Err() error {
	var errs []error
	for _, f := range r.Missing() {
		errs = append(errs, fmt.Errorf("%s (%s): %s", f.Path, f.URL, f.Error))
	}
	return errors.Join(errs...)
}

// Summary is a one-line account: "5 models: 3 present, 2 downloaded (7.1 GB), 0 failed".
func (r *Report) Summary() string {
	var bytes int64
	for _, f := range r.Files {
		bytes += f.Downloaded
	}
	noun := "models"
	if len(r.Files) == 1 {
		noun = "model"
	}
	s := fmt.Sprintf("%d %s: %d present, %d downloaded (%s in %s), %d failed",
		len(r.Files), noun, r.Count(StatePresent), r.Count(StateDownloaded), formatBytes(bytes),
		r.Elapsed.Round(100*time.Millisecond), r.Count(StateFailed))
	if n := r.Count(StateSkipped); n > 0 {
		s += fmt.Sprintf(", %d not done", n)
	}
	return s
}

type syncer struct {
	opts  Options
	dir   string
	log   *slog.Logger
	cache *hashCache
	track *tracker
	fsMu  sync.Mutex // creating folders
}

// Sync makes sure every entry is in opts.Dir/folder/file with the right
// hash. Files already there are verified (through the hash cache when their
// size and mtime are unchanged); a wrong one is replaced. Missing files are
// downloaded to file.part, resuming a partial download with an HTTP Range
// request, verified and renamed into place. Up to opts.Concurrency files are
// handled at once; progress is logged every opts.ProgressInterval.
//
// A failed file does not stop the others: the Report says what happened to
// each (see Report.Err). Sync returns an error only when it cannot start
// (no models directory) or ctx ends; partial downloads are kept for the
// next run.
func Sync(ctx context.Context, entries []Entry, opts Options) (*Report, error) {
	opts.defaults()
	start := time.Now()
	if opts.Dir == "" {
		return nil, errors.New("models: no models directory")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("models directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("models directory %s is not a directory", dir)
	}
	s := &syncer{opts: opts, dir: dir, log: opts.Logger, track: &tracker{log: opts.Logger}}
	unlock, err := s.lockDir(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var cerr error
	if s.cache, cerr = loadCache(dir); cerr != nil {
		s.log.Warn("models: hash cache unreadable; files will be hashed again", "err", cerr)
	}
	if need, free := s.missingBytes(entries), diskFree(dir); need > 0 && free >= 0 && need > free {
		s.log.Warn("models: the listed sizes of the missing files exceed the free disk space",
			"dir", dir, "missing", formatBytes(need), "free", formatBytes(free))
	}

	report := &Report{Files: make([]FileStatus, len(entries))}
	stopProgress := s.progressLoop()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(opts.Concurrency, max(len(entries), 1)) {
		wg.Go(func() {
			for i := range jobs {
				report.Files[i] = s.syncOne(ctx, entries[i])
			}
		})
	}
	for i := range entries {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	stopProgress()
	report.Elapsed = time.Since(start)

	if ctx.Err() != nil {
		s.log.Info("models: stopped", "summary", report.Summary())
		return report, ctx.Err()
	}
	for _, f := range report.Missing() {
		s.log.Error("model missing", "file", f.Path, "url", f.URL, "err", f.Error)
	}
	if len(report.Missing()) == 0 {
		s.log.Info("models ready", "summary", report.Summary(), "dir", dir)
	} else {
		s.log.Warn("models incomplete", "summary", report.Summary(), "dir", dir)
	}
	return report, nil
}

// LockFile is the name of the lock file in the models directory: one
// process at a time syncs a models directory (several GPU hosts may share
// one on a network volume).
const LockFile = ".workshop-models.lock"

// lockPoll is how often a process waiting for the lock tries again.
var lockPoll = time.Second

// lockDir takes the models directory's lock, waiting while another process
// holds it. It returns an error only when ctx ends; a lock that cannot be
// taken at all (read-only directory, no locks on this file system) is
// logged and done without.
func (s *syncer) lockDir(ctx context.Context) (unlock func(), err error) {
	name := filepath.Join(s.dir, LockFile)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		s.log.Warn("models: cannot create the lock file; going on without it", "err", err)
		return func() {}, nil
	}
	var t *time.Ticker
	for {
		ok, err := tryLock(f)
		if err != nil {
			s.log.Warn("models: cannot lock the models folder; going on without it", "err", err)
			ok = true
		}
		if ok {
			if t != nil {
				t.Stop()
				s.log.Info("models: the other process is done; going on")
			}
			return func() { _ = f.Close() }, nil
		}
		if t == nil {
			s.log.Warn("models: another process is syncing this models folder; waiting for it", "lock", name)
			t = time.NewTicker(lockPoll)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			_ = f.Close()
			return nil, ctx.Err()
		}
	}
}

// missingBytes sums the manifest sizes of the files not on disk.
func (s *syncer) missingBytes(entries []Entry) int64 {
	var n int64
	for _, e := range entries {
		if e.Size <= 0 {
			continue
		}
		if _, err := os.Stat(s.abs(e)); err != nil {
			n += e.Size
		}
	}
	return n
}

func (s *syncer) abs(e Entry) string { return filepath.Join(s.dir, filepath.FromSlash(e.Path())) }

func (s *syncer) progressLoop() (stop func()) {
	if s.opts.ProgressInterval < 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.opts.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				s.track.tick(now)
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// syncOne brings one entry into place.
func (s *syncer) syncOne(ctx context.Context, e Entry) FileStatus {
	st := FileStatus{Path: e.Path(), URL: redactURL(e.URL)}
	start := time.Now()
	defer func() { st.Duration = time.Since(start) }()
	if ctx.Err() != nil {
		st.State, st.Error, st.Retryable = StateSkipped, "cancelled", true
		return st
	}
	final := s.abs(e)
	fail := func(err error) FileStatus {
		if ctx.Err() != nil {
			st.State, st.Error, st.Retryable = StateSkipped, "cancelled", true
			return st
		}
		st.State, st.Error = StateFailed, err.Error()
		var pe *permanentError
		st.Retryable = !errors.As(err, &pe)
		return st
	}

	fi, err := os.Stat(final)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fail(permanentf("%s exists and is not a regular file", final))
	case err == nil:
		sum, how, problem, err := s.checkExisting(ctx, e, final, fi)
		if err != nil {
			return fail(err)
		}
		if problem == "" {
			st.State, st.Size, st.SHA256, st.Verified = StatePresent, fi.Size(), sum, how
			s.log.Info("model present", "file", st.Path, "size", formatBytes(fi.Size()), "verified", how)
			return st
		}
		s.log.Warn("model file is wrong; replacing it", "file", st.Path, "problem", problem)
		if err := os.Remove(final); err != nil {
			return fail(permanentf("remove the wrong file: %v", err))
		}
		_ = s.cache.forget(e.Path())
	case !errors.Is(err, fs.ErrNotExist):
		return fail(permanentf("%v", err))
	}

	d := &download{s: s, e: e, final: final, part: final + partSuffix}
	if err := d.run(ctx); err != nil {
		st.Downloaded = d.received
		return fail(err)
	}
	st.State, st.Size, st.SHA256, st.Verified, st.Downloaded = StateDownloaded, d.written, d.sum, VerifiedDownload, d.received
	if e.SHA256 == "" {
		st.Verified = VerifiedNone
	}
	return st
}

// checkExisting verifies a file already in place. problem is "" when it is
// right, else why it is not.
func (s *syncer) checkExisting(ctx context.Context, e Entry, name string, fi fs.FileInfo) (sum, how, problem string, err error) {
	if e.Size > 0 && fi.Size() != e.Size {
		return "", "", fmt.Sprintf("size %d bytes, the manifest says %d", fi.Size(), e.Size), nil
	}
	if e.SHA256 == "" {
		if e.Size > 0 {
			return "", VerifiedSize, "", nil
		}
		return "", VerifiedNone, "", nil
	}
	how = VerifiedCache
	sum, ok := s.cache.lookup(e.Path(), fi)
	if !ok {
		how = VerifiedHash
		tr := s.track.start(e.Path(), phaseHash, 0, fi.Size())
		sum, err = hashFile(ctx, name, tr)
		s.track.finish(tr)
		if err != nil {
			return "", "", "", fmt.Errorf("hash %s: %w", name, err)
		}
		if err := s.cache.put(e.Path(), fi, sum); err != nil {
			s.log.Warn("models: cannot save the hash cache", "err", err)
		}
	}
	if sum != e.SHA256 {
		return sum, how, fmt.Sprintf("sha256 %s, the manifest says %s", sum, e.SHA256), nil
	}
	return sum, how, "", nil
}

// hashFile returns the sha256 of a file, counting progress in tr.
func hashFile(ctx context.Context, name string, tr *transfer) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := copyCtx(ctx, h, f, tr); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyCtx copies src to dst in 1 MiB chunks until EOF, an error or the end
// of ctx, counting into tr.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader, tr *transfer) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := src.Read(buf)
		if m > 0 {
			if _, err := dst.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
			if tr != nil {
				tr.done.Add(int64(m))
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// permanentError marks a failure that retrying will not fix.
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

func permanentf(format string, args ...any) error {
	return &permanentError{msg: fmt.Sprintf(format, args...)}
}

// mkdirs creates dir/rel and any missing parents below dir, each 0755
// whatever the umask: ComfyUI often runs as another user than the agent.
// It returns the folders it created, parents first.
func mkdirs(dir, rel string) (created []string, err error) {
	cur := dir
	for part := range strings.SplitSeq(filepath.ToSlash(rel), "/") {
		if part == "" || part == "." {
			continue
		}
		cur = filepath.Join(cur, part)
		err := os.Mkdir(cur, 0o755)
		switch {
		case err == nil:
			created = append(created, cur)
			if err := os.Chmod(cur, 0o755); err != nil {
				return created, err
			}
		case errors.Is(err, fs.ErrExist):
			fi, serr := os.Stat(cur)
			if serr != nil {
				return created, serr
			}
			if !fi.IsDir() {
				return created, fmt.Errorf("%s is not a directory", cur)
			}
		default:
			return created, err
		}
	}
	return created, nil
}
