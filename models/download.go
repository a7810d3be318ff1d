package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// partSuffix names a partial download: file + ".part".
const partSuffix = ".part"

var (
	errStalled = errors.New("no data received")
	// errRestart: the partial download cannot be continued; start again
	// from byte 0 at once (not a failure).
	errRestart = errors.New("restart from zero")
)

// download brings one file into place from its URL.
type download struct {
	s           *syncer
	e           Entry
	final, part string

	f        *os.File
	h        hash.Hash
	written  int64 // bytes in the part file, all of them hashed into h
	total    int64 // expected final size, -1 while unknown
	received int64 // bytes received in this run
	sum      string
	tr       *transfer

	// pieces counts the sources of the part's bytes: a part left by an
	// earlier run and each response that added to it. A hash mismatch of a
	// file of several pieces is retried once from zero before it counts.
	pieces      int
	fromPart    bool // the part was left by an earlier run
	fromScratch bool // already restarted from zero after a mismatch
	spaceCheck  bool // the free disk space was checked
}

func (d *download) run(ctx context.Context) (err error) {
	s, e := d.s, d.e
	d.h = sha256.New()
	d.total = -1
	if e.Size > 0 {
		d.total = e.Size
	}
	defer func() {
		if d.f == nil {
			return
		}
		_ = d.f.Close()
		if err != nil && d.written == 0 {
			_ = os.Remove(d.part) // nothing worth keeping
		}
	}()
	// A part left by an earlier run is opened now; otherwise the folder and
	// the part are created when the server starts sending, so that a 404
	// leaves nothing behind.
	if fi, err := os.Stat(d.part); err == nil && fi.Mode().IsRegular() {
		if err := d.open(); err != nil {
			return err
		}
		d.written = fi.Size()
	}
	if d.written > 0 && e.Size > 0 && d.written > e.Size {
		s.log.Warn("partial download is larger than the file; starting again", "file", e.Path(), "part", formatBytes(d.written))
		if err := d.reset(); err != nil {
			return err
		}
	}
	if d.written > 0 {
		// Hash what an earlier run fetched, so the hash can be finished as
		// the rest arrives.
		tr := s.track.start(e.Path(), phasePartial, 0, d.written)
		_, err := copyCtx(ctx, d.h, io.NewSectionReader(d.f, 0, d.written), tr)
		s.track.finish(tr)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return permanentf("read the partial download: %v", err)
		}
		d.fromPart = true
		s.log.Info("resuming model download", "file", e.Path(), "url", redactURL(e.URL), "from", formatBytes(d.written))
	} else {
		s.log.Info("downloading model", "file", e.Path(), "url", redactURL(e.URL))
	}

	d.tr = s.track.start(e.Path(), phaseDownload, d.written, d.total)
	defer s.track.finish(d.tr)
	start := time.Now()

	failures := 0
	for {
		complete, progressed, err := d.attempt(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errRestart) {
			if err := d.reset(); err != nil {
				return err
			}
			continue
		}
		var pe *permanentError
		if errors.As(err, &pe) {
			return err
		}
		if progressed {
			failures = 0
		}
		if err != nil {
			failures++
			if failures >= s.opts.Retries {
				return fmt.Errorf("giving up after %d failed attempts: %w", failures, err)
			}
			wait := min(s.opts.RetryBackoff<<min(failures-1, 16), s.opts.MaxBackoff)
			s.log.Warn("model download interrupted; retrying", "file", e.Path(), "err", err,
				"done", formatBytes(d.written), "attempt", failures, "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if !complete {
			continue // the server sent part of the range; ask for the rest
		}
		// Complete: check size and hash.
		d.sum = hex.EncodeToString(d.h.Sum(nil))
		var problem string
		switch {
		case e.Size > 0 && d.written != e.Size:
			problem = fmt.Sprintf("downloaded %d bytes, the manifest says %d", d.written, e.Size)
		case e.SHA256 != "" && d.sum != e.SHA256:
			problem = fmt.Sprintf("sha256 mismatch: downloaded file has %s, the manifest says %s", d.sum, e.SHA256)
		}
		if problem == "" {
			break
		}
		if (d.pieces > 1 || d.fromPart) && !d.fromScratch {
			s.log.Warn("resumed download is wrong; downloading it again from the start", "file", e.Path(), "problem", problem)
			d.fromScratch = true
			if err := d.reset(); err != nil {
				return err
			}
			continue
		}
		_ = d.f.Close()
		d.f = nil
		_ = os.Remove(d.part)
		return permanentf("%s", problem)
	}
	if err := d.install(); err != nil {
		return err
	}
	took := time.Since(start)
	attrs := []any{"file", e.Path(), "size", formatBytes(d.written), "took", took.Round(time.Millisecond),
		"speed", formatRate(float64(d.received) / max(took.Seconds(), 1e-3))}
	if e.SHA256 == "" {
		attrs = append(attrs, "sha256", d.sum, "note", "the manifest has no sha256 for this file: add this one to pin it")
	}
	s.log.Info("model downloaded", attrs...)
	return nil
}

// open creates the folders and opens (or creates) the part file.
func (d *download) open() error {
	if d.f != nil {
		return nil
	}
	rel := filepath.Dir(filepath.FromSlash(d.e.Path()))
	d.s.fsMu.Lock()
	defer d.s.fsMu.Unlock()
	if _, err := mkdirs(d.s.dir, rel); err != nil {
		return permanentf("create the folder: %v", err)
	}
	f, err := os.OpenFile(d.part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return permanentf("%v", err)
	}
	// Readable by ComfyUI whatever the agent's umask.
	if err := f.Chmod(0o644); err != nil {
		_ = f.Close()
		return permanentf("%v", err)
	}
	d.f = f
	return nil
}

// reset empties the part file and the hash.
func (d *download) reset() error {
	if d.f != nil {
		if err := d.f.Truncate(0); err != nil {
			return permanentf("%v", err)
		}
	}
	d.h.Reset()
	d.written, d.pieces, d.fromPart = 0, 0, false
	if d.e.Size <= 0 {
		d.total = -1
	}
	if d.tr != nil {
		d.tr.done.Store(0)
	}
	return nil
}

// attempt makes one request and appends what it brings to the part file.
// complete: the file is whole (as far as its size is known). progressed:
// bytes arrived. A *permanentError ends the download; errRestart restarts
// it from zero; other errors are retried with backoff.
func (d *download) attempt(ctx context.Context) (complete, progressed bool, err error) {
	s, e := d.s, d.e
	if d.total >= 0 && d.written == d.total {
		return true, false, nil // an earlier run fetched it all but did not install it
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(actx, http.MethodGet, e.URL, nil)
	if err != nil {
		return false, false, permanentf("%v", err)
	}
	req.Header.Set("User-Agent", s.opts.UserAgent)
	req.Header.Set("Accept-Encoding", "identity") // byte offsets must be the file's
	offset := d.written
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	if s.opts.Authorize != nil {
		s.opts.Authorize(req)
	}
	// The stall timer covers the wait for the headers too.
	stall := time.AfterFunc(s.opts.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		if context.Cause(actx) == errStalled {
			return false, false, fmt.Errorf("no answer within %v", s.opts.StallTimeout)
		}
		// The URL (perhaps a signed redirect target) stays out of messages.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return false, false, err
	}
	defer resp.Body.Close()

	var length int64 // bytes this response should carry, -1 unknown
	switch {
	case resp.StatusCode == http.StatusOK:
		if offset > 0 {
			s.log.Info("the server ignored the range request; downloading from the start", "file", e.Path())
			if err := d.reset(); err != nil {
				return false, false, err
			}
		}
		length = resp.ContentLength
		if err := d.learnTotal(resp.ContentLength); err != nil {
			return false, false, err
		}
	case resp.StatusCode == http.StatusPartialContent:
		start, end, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset || (total >= 0 && end >= total) {
			if offset == 0 {
				return false, false, fmt.Errorf("the server answered %s with Content-Range %q to a request for the whole file",
					resp.Status, resp.Header.Get("Content-Range"))
			}
			s.log.Info("the server answered the range request with another range; downloading from the start",
				"file", e.Path(), "asked", fmt.Sprintf("bytes=%d-", offset), "content_range", resp.Header.Get("Content-Range"))
			return false, false, errRestart
		}
		length = end - start + 1
		if err := d.learnTotal(total); err != nil {
			return false, false, err
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		if total, ok := parseUnsatisfiedRange(resp.Header.Get("Content-Range")); ok && total == offset {
			// The part is the whole file (its size was not known).
			if err := d.learnTotal(total); err != nil {
				return false, false, err
			}
			return true, false, nil
		}
		s.log.Info("the partial download does not fit the file on the server; downloading from the start",
			"file", e.Path(), "part", formatBytes(offset), "content_range", resp.Header.Get("Content-Range"))
		return false, false, errRestart
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return false, false, permanentf("not found: %s", resp.Status)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return false, false, permanentf("access denied: %s (a gated model needs a token: HF_TOKEN for huggingface.co, CIVITAI_TOKEN for civitai.com)", resp.Status)
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return false, false, fmt.Errorf("server answered %s", resp.Status)
	default:
		return false, false, permanentf("server answered %s", resp.Status)
	}

	if err := d.open(); err != nil {
		return false, false, err
	}
	if !d.spaceCheck && d.total >= 0 {
		d.spaceCheck = true
		need := d.total - d.written
		if free := diskFree(filepath.Dir(d.part)); free >= 0 && need > free {
			return false, false, permanentf("needs %s more disk space, %s free in %s", formatBytes(need), formatBytes(free), filepath.Dir(d.part))
		}
	}

	var body io.Reader = resp.Body
	limit := int64(-1)
	switch {
	case length >= 0:
		limit = length
	case d.total >= 0:
		limit = d.total - d.written
	}
	if limit >= 0 {
		body = io.LimitReader(resp.Body, limit)
	}
	w := &partWriter{d: d, stall: stall, timeout: s.opts.StallTimeout}
	n, err := copyCtx(actx, w, body, nil)
	progressed = n > 0
	if progressed {
		d.pieces++
	}
	if err != nil {
		if w.err != nil {
			return false, progressed, w.err
		}
		if context.Cause(actx) == errStalled {
			return false, progressed, fmt.Errorf("no data for %v", s.opts.StallTimeout)
		}
		return false, progressed, err
	}
	if limit >= 0 && n < limit {
		return false, progressed, fmt.Errorf("the server sent %d of %d bytes", n, limit)
	}
	if d.total < 0 {
		return true, progressed, nil // read to the end
	}
	if d.written >= d.total {
		// Anything beyond the expected size means the file is not the one
		// the manifest describes.
		var one [1]byte
		if m, _ := io.ReadFull(resp.Body, one[:]); m > 0 {
			return false, progressed, permanentf("the server sent more than %d bytes", d.total)
		}
		return true, progressed, nil
	}
	return false, progressed, nil
}

// learnTotal notes the full size as the server gives it (-1: unknown) and
// checks it against the manifest.
func (d *download) learnTotal(total int64) error {
	if total < 0 {
		return nil
	}
	if d.e.Size > 0 && total != d.e.Size {
		return permanentf("the server has %d bytes, the manifest says %d", total, d.e.Size)
	}
	d.total = total
	d.tr.total.Store(total)
	return nil
}

// install fsyncs the part file and renames it into place.
func (d *download) install() error {
	if err := d.f.Sync(); err != nil {
		return permanentf("%v", err)
	}
	err := d.f.Close()
	d.f = nil
	if err != nil {
		return permanentf("%v", err)
	}
	if err := os.Rename(d.part, d.final); err != nil {
		return permanentf("%v", err)
	}
	if err := syncDir(filepath.Dir(d.final)); err != nil {
		return permanentf("%v", err)
	}
	fi, err := os.Stat(d.final)
	if err != nil {
		return permanentf("%v", err)
	}
	if err := d.s.cache.put(d.e.Path(), fi, d.sum); err != nil {
		d.s.log.Warn("models: cannot save the hash cache", "err", err)
	}
	return nil
}

// partWriter appends to the part file and the hash and keeps the stall
// timer from firing while data flows. A write error is permanent (a full
// disk is not fixed by retrying).
type partWriter struct {
	d       *download
	stall   *time.Timer
	timeout time.Duration
	err     error
}

func (w *partWriter) Write(p []byte) (int, error) {
	n, err := w.d.f.WriteAt(p, w.d.written)
	w.d.h.Write(p[:n])
	w.d.written += int64(n)
	w.d.received += int64(n)
	w.d.tr.done.Store(w.d.written)
	w.stall.Reset(w.timeout)
	if err != nil {
		w.err = permanentf("write %s: %v", w.d.part, err)
		return n, w.err
	}
	return n, nil
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*": -1).
func parseContentRange(v string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 = strconv.ParseInt(b, 10, 64)
	total = -1
	if tot != "*" {
		total, err3 = strconv.ParseInt(tot, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

// parseUnsatisfiedRange parses the "bytes */TOTAL" of a 416 answer.
func parseUnsatisfiedRange(v string) (total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes */")
	if !found {
		return 0, false
	}
	total, err := strconv.ParseInt(rest, 10, 64)
	return total, err == nil && total >= 0
}
