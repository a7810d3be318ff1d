package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// blob returns n deterministic pseudo-random bytes.
func blob(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// fileServer serves files with http.ServeContent (Range support), counting
// requests; behave, when set for a path, may answer a request itself and
// return true.
type fileServer struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	requests map[string][]string // path -> Range header of each request
	behave   map[string]func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool
}

func newFileServer(t *testing.T) *fileServer {
	fs := &fileServer{files: map[string][]byte{}, requests: map[string][]string{},
		behave: map[string]func(http.ResponseWriter, *http.Request, int, []byte) bool{}}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.requests[r.URL.Path] = append(fs.requests[r.URL.Path], r.Header.Get("Range"))
		n := len(fs.requests[r.URL.Path])
		data, ok := fs.files[r.URL.Path]
		behave := fs.behave[r.URL.Path]
		fs.mu.Unlock()
		if behave != nil && behave(w, r, n, data) {
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fileServer) add(path string, data []byte) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.files[path] = data
	return fs.URL + path
}

func (fs *fileServer) ranges(path string) []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]string(nil), fs.requests[path]...)
}

func (fs *fileServer) total() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, r := range fs.requests {
		n += len(r)
	}
	return n
}

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testOptions(t *testing.T, dir string) (Options, *logBuf) {
	lb := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("MODELS_TEST_LOG") != "" {
			t.Logf("log:\n%s", lb)
		}
	})
	return Options{
		Dir:              dir,
		Logger:           slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ProgressInterval: -1,
		RetryBackoff:     time.Millisecond,
		MaxBackoff:       5 * time.Millisecond,
	}, lb
}

func mustSync(t *testing.T, entries []Entry, opts Options) *Report {
	t.Helper()
	r, err := Sync(context.Background(), entries, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Files) != len(entries) {
		t.Fatalf("%d statuses for %d entries", len(r.Files), len(entries))
	}
	return r
}

func checkFile(t *testing.T, dir, rel string, want []byte) {
	t.Helper()
	name := filepath.Join(dir, filepath.FromSlash(rel))
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, sha256 %s; want %d bytes, %s", rel, len(got), sum(got), len(want), sum(want))
	}
	if _, err := os.Stat(name + partSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.part left behind: %v", rel, err)
	}
}

func TestSyncFromScratch(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	a, b := blob(300_000, 1), blob(70_000, 2)
	entries := []Entry{
		{Folder: "checkpoints", File: "a.safetensors", URL: srv.add("/a", a), SHA256: sum(a), Size: int64(len(a))},
		{Folder: "loras/styles", File: "b.safetensors", URL: srv.add("/b", b), SHA256: sum(b)},
	}
	opts, log := testOptions(t, dir)
	r := mustSync(t, entries, opts)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	for i, f := range r.Files {
		if f.State != StateDownloaded || f.Verified != VerifiedDownload || f.SHA256 != entries[i].SHA256 || f.Path != entries[i].Path() {
			t.Errorf("status %+v", f)
		}
	}
	if r.Files[0].Downloaded != int64(len(a)) || r.Files[0].Size != int64(len(a)) {
		t.Errorf("sizes %+v", r.Files[0])
	}
	checkFile(t, dir, "checkpoints/a.safetensors", a)
	checkFile(t, dir, "loras/styles/b.safetensors", b)
	for _, p := range []string{"loras/styles/b.safetensors", "loras/styles", "loras"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if want := os.FileMode(0o644); fi.IsDir() {
			if fi.Mode().Perm() != 0o755 {
				t.Errorf("%s: mode %v", p, fi.Mode())
			}
		} else if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	if got := srv.ranges("/a"); len(got) != 1 || got[0] != "" {
		t.Errorf("requests for a: %q", got)
	}
	if !strings.Contains(r.Summary(), "2 models: 0 present, 2 downloaded") || !strings.Contains(log.String(), "models ready") {
		t.Errorf("summary %q\n%s", r.Summary(), log)
	}

	// The hash cache knows both files.
	data, err := os.ReadFile(filepath.Join(dir, CacheFile))
	if err != nil {
		t.Fatal(err)
	}
	var doc cacheDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != 1 || doc.Files["checkpoints/a.safetensors"].SHA256 != sum(a) || doc.Files["loras/styles/b.safetensors"].Size != int64(len(b)) {
		t.Errorf("cache %s", data)
	}
}

// A transfer cut midway resumes with a Range request from where it stopped.
func TestSyncResumesAfterCut(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(1<<20, 3)
	srv.behave["/m"] = func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		if n > 1 {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // cut the connection
	}
	e := Entry{Folder: "vae", File: "m.safetensors", URL: srv.add("/m", data), SHA256: sum(data)}
	opts, log := testOptions(t, dir)
	r := mustSync(t, []Entry{e}, opts)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dir, e.Path(), data)
	got := srv.ranges("/m")
	if len(got) != 2 || got[0] != "" || !strings.HasPrefix(got[1], "bytes=") {
		t.Fatalf("requests %q, want a plain GET then a Range", got)
	}
	var off int
	if _, err := fmt.Sscanf(got[1], "bytes=%d-", &off); err != nil || off <= 0 || off > len(data)/2 {
		t.Fatalf("resumed at %q", got[1])
	}
	if f := r.Files[0]; f.State != StateDownloaded || f.Downloaded != int64(len(data)) {
		t.Errorf("status %+v", f)
	}
	if !strings.Contains(log.String(), "model download interrupted; retrying") {
		t.Errorf("no retry logged")
	}
}

// A .part left by an earlier run is hashed and continued.
func TestSyncResumesEarlierPart(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(500_000, 4)
	e := Entry{Folder: "checkpoints", File: "m.ckpt", URL: srv.add("/m", data), SHA256: sum(data), Size: int64(len(data))}
	writePart(t, dir, e, data[:123_456])
	opts, log := testOptions(t, dir)
	r := mustSync(t, []Entry{e}, opts)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dir, e.Path(), data)
	if got := srv.ranges("/m"); len(got) != 1 || got[0] != "bytes=123456-" {
		t.Fatalf("requests %q", got)
	}
	if f := r.Files[0]; f.Downloaded != int64(len(data)-123_456) {
		t.Errorf("downloaded %d", f.Downloaded)
	}
	if !strings.Contains(log.String(), "resuming model download") {
		t.Errorf("resume not logged")
	}
}

func writePart(t *testing.T, dir string, e Entry, b []byte) {
	t.Helper()
	name := filepath.Join(dir, filepath.FromSlash(e.Path())) + partSuffix
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A server that ignores Range answers 200 with the whole file: the part is
// dropped and the file written from byte 0.
func TestSyncServerIgnoresRange(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(200_000, 5)
	srv.behave["/m"] = func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data)
		return true
	}
	e := Entry{Folder: "checkpoints", File: "m", URL: srv.add("/m", data), SHA256: sum(data)}
	writePart(t, dir, e, bytes.Repeat([]byte("x"), 50_000)) // not even the right bytes
	opts, log := testOptions(t, dir)
	r := mustSync(t, []Entry{e}, opts)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dir, e.Path(), data)
	if got := srv.ranges("/m"); len(got) != 1 || got[0] != "bytes=50000-" {
		t.Fatalf("requests %q", got)
	}
	if !strings.Contains(log.String(), "ignored the range request") {
		t.Errorf("not logged")
	}
}

// A 206 for another range than asked, or a 416, restarts from zero.
func TestSyncBadRangeAnswers(t *testing.T) {
	data := blob(100_000, 6)
	cases := map[string]func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool{
		"wrong start": func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
			if r.Header.Get("Range") == "" {
				return false
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 10-%d/%d", len(data)-1, len(data)))
			w.Header().Set("Content-Length", fmt.Sprint(len(data)-10))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(data[10:])
			return true
		},
		"no content-range": func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
			if r.Header.Get("Range") == "" {
				return false
			}
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(data[40_000:])
			return true
		},
		"416": func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
			if r.Header.Get("Range") == "" {
				return false
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return true
		},
	}
	for name, behave := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newFileServer(t)
			dir := t.TempDir()
			srv.behave["/m"] = behave
			e := Entry{Folder: "unet", File: "m", URL: srv.add("/m", data), SHA256: sum(data)}
			writePart(t, dir, e, data[:40_000])
			opts, _ := testOptions(t, dir)
			r := mustSync(t, []Entry{e}, opts)
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			checkFile(t, dir, e.Path(), data)
			if got := srv.ranges("/m"); len(got) != 2 || got[0] != "bytes=40000-" || got[1] != "" {
				t.Fatalf("requests %q", got)
			}
		})
	}
}

// A part from another version of the file gives a wrong hash once resumed:
// the file is downloaded once more from zero before that counts.
func TestSyncStalePartRetriedFromScratch(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(100_000, 7)
	e := Entry{Folder: "checkpoints", File: "m", URL: srv.add("/m", data), SHA256: sum(data)}
	writePart(t, dir, e, blob(30_000, 99))
	opts, log := testOptions(t, dir)
	r := mustSync(t, []Entry{e}, opts)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dir, e.Path(), data)
	if got := srv.ranges("/m"); len(got) != 2 || got[0] != "bytes=30000-" || got[1] != "" {
		t.Fatalf("requests %q", got)
	}
	if !strings.Contains(log.String(), "resumed download is wrong") {
		t.Error("not logged")
	}
}

func TestSyncHashMismatch(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(50_000, 8)
	good := blob(10, 9)
	entries := []Entry{
		{Folder: "checkpoints", File: "m", URL: srv.add("/m", data), SHA256: sumA},
		{Folder: "vae", File: "ok", URL: srv.add("/ok", good), SHA256: sum(good)},
	}
	opts, _ := testOptions(t, dir)
	r := mustSync(t, entries, opts)
	f := r.Files[0]
	if f.State != StateFailed || f.Retryable || !strings.Contains(f.Error, "sha256 mismatch") ||
		!strings.Contains(f.Error, sum(data)) || !strings.Contains(f.Error, sumA) {
		t.Fatalf("status %+v", f)
	}
	if r.Files[1].State != StateDownloaded {
		t.Errorf("the good file: %+v", r.Files[1])
	}
	if got := srv.ranges("/m"); len(got) != 1 {
		t.Errorf("requests %q: a full download with a wrong hash is not retried", got)
	}
	for _, p := range []string{"checkpoints/m", "checkpoints/m.part"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v", p, err)
		}
	}
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), "checkpoints/m ("+srv.URL+"/m)") || strings.Contains(err.Error(), "vae/ok") {
		t.Errorf("Err: %v", err)
	}
	if !r.Permanent() || !strings.Contains(r.Summary(), "1 failed") {
		t.Errorf("Permanent %v, summary %q", r.Permanent(), r.Summary())
	}
}

func TestSyncHTTPErrors(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(1000, 10)
	srv.behave["/forbidden"] = func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		http.Error(w, "gated", http.StatusForbidden)
		return true
	}
	entries := []Entry{
		{Folder: "checkpoints", File: "missing", URL: srv.URL + "/missing", SHA256: sumA},
		{Folder: "checkpoints", File: "gated", URL: srv.URL + "/forbidden", SHA256: sumA},
		{Folder: "checkpoints", File: "size", URL: srv.add("/size", data), Size: 999},
	}
	opts, _ := testOptions(t, dir)
	r := mustSync(t, entries, opts)
	for i, want := range []string{"not found: 404", "access denied: 403", "the server has 1000 bytes, the manifest says 999"} {
		if f := r.Files[i]; f.State != StateFailed || f.Retryable || !strings.Contains(f.Error, want) {
			t.Errorf("%s: %+v, want %q", entries[i].File, f, want)
		}
	}
	if srv.total() != 3 {
		t.Errorf("%d requests, want 3 (no retries)", srv.total())
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 1 { // the lock
		t.Errorf("files left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoints")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the folder of files that failed is left: %v", err)
	}
}

func TestSyncRetriesServerErrors(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(10_000, 11)
	srv.behave["/flaky"] = func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		if n <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	srv.behave["/down"] = func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		http.Error(w, "down", http.StatusBadGateway)
		return true
	}
	entries := []Entry{
		{Folder: "loras", File: "flaky", URL: srv.add("/flaky", data), SHA256: sum(data)},
		{Folder: "loras", File: "down", URL: srv.add("/down", data), SHA256: sum(data)},
		{Folder: "loras", File: "refused", URL: "http://127.0.0.1:1/x", SHA256: sum(data)},
	}
	opts, log := testOptions(t, dir)
	opts.Retries = 3
	r := mustSync(t, entries, opts)
	if f := r.Files[0]; f.State != StateDownloaded {
		t.Errorf("flaky: %+v", f)
	}
	if got := srv.ranges("/flaky"); len(got) != 3 {
		t.Errorf("flaky: %d requests", len(got))
	}
	for _, f := range r.Files[1:] {
		if f.State != StateFailed || !f.Retryable || !strings.Contains(f.Error, "giving up after 3 failed attempts") {
			t.Errorf("%+v", f)
		}
	}
	if got := srv.ranges("/down"); len(got) != 3 {
		t.Errorf("down: %d requests", len(got))
	}
	if r.Permanent() {
		t.Error("network failures reported as permanent")
	}
	if !strings.Contains(log.String(), "502 Bad Gateway") {
		t.Error("retry reason not logged")
	}
}

// A transfer that stops sending is aborted after StallTimeout and resumed.
func TestSyncStall(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(200_000, 12)
	srv.behave["/m"] = func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		if n > 1 {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data[:1000])
		w.(http.Flusher).Flush()
		<-r.Context().Done() // hang until the client gives up
		return true
	}
	e := Entry{Folder: "checkpoints", File: "m", URL: srv.add("/m", data), SHA256: sum(data)}
	opts, log := testOptions(t, dir)
	opts.StallTimeout = 200 * time.Millisecond
	r := mustSync(t, []Entry{e}, opts)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dir, e.Path(), data)
	if got := srv.ranges("/m"); len(got) != 2 || !strings.HasPrefix(got[1], "bytes=") {
		t.Fatalf("requests %q", got)
	}
	if !strings.Contains(log.String(), "no data for 200ms") {
		t.Error("stall not logged")
	}
}

// A file in place is verified, not downloaded; on a restart its hash comes
// from the cache while its size and mtime are unchanged.
func TestSyncExistingAndHashCache(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(64_000, 13)
	e := Entry{Folder: "checkpoints", File: "m", URL: srv.add("/m", data), SHA256: sum(data), Size: int64(len(data))}
	name := filepath.Join(dir, "checkpoints", "m")
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	opts, _ := testOptions(t, dir)

	r := mustSync(t, []Entry{e}, opts)
	if f := r.Files[0]; f.State != StatePresent || f.Verified != VerifiedHash || f.SHA256 != e.SHA256 {
		t.Fatalf("first run: %+v", f)
	}
	r = mustSync(t, []Entry{e}, opts)
	if f := r.Files[0]; f.State != StatePresent || f.Verified != VerifiedCache {
		t.Fatalf("restart: %+v", f)
	}
	if srv.total() != 0 {
		t.Fatalf("%d requests for a file in place", srv.total())
	}

	// Proof that the cache, not the content, answered: same size and mtime,
	// other bytes, still "present".
	fi, _ := os.Stat(name)
	if err := os.WriteFile(name, blob(len(data), 14), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if f := mustSync(t, []Entry{e}, opts).Files[0]; f.Verified != VerifiedCache || f.State != StatePresent {
		t.Fatalf("cache not used: %+v", f)
	}
	// A new mtime invalidates the entry: hashed, found wrong, replaced.
	later := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(name, later, later); err != nil {
		t.Fatal(err)
	}
	opts2, log := testOptions(t, dir)
	if f := mustSync(t, []Entry{e}, opts2).Files[0]; f.State != StateDownloaded {
		t.Fatalf("changed file: %+v", f)
	}
	checkFile(t, dir, e.Path(), data)
	if !strings.Contains(log.String(), "model file is wrong; replacing it") || !strings.Contains(log.String(), "level=WARN") {
		t.Errorf("no warning:\n%s", log)
	}
	if f := mustSync(t, []Entry{e}, opts).Files[0]; f.Verified != VerifiedCache {
		t.Errorf("after the download: %+v", f)
	}
}

func TestSyncExistingWrongSizeAndNoHash(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(5000, 15)
	entries := []Entry{
		{Folder: "vae", File: "sized", URL: srv.add("/sized", data), Size: int64(len(data))},
		{Folder: "vae", File: "bare", URL: srv.add("/bare", data)},
	}
	if err := os.MkdirAll(filepath.Join(dir, "vae"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vae", "sized"), data[:10], 0o644); err != nil { // truncated
		t.Fatal(err)
	}
	opts, log := testOptions(t, dir)
	r := mustSync(t, entries, opts)
	for _, f := range r.Files {
		if f.State != StateDownloaded || f.Verified != VerifiedNone || f.SHA256 != sum(data) {
			t.Errorf("%+v", f)
		}
	}
	checkFile(t, dir, "vae/sized", data)
	if !strings.Contains(log.String(), "add this one to pin it") {
		t.Error("the hash of an unpinned file is not logged")
	}
	r = mustSync(t, entries, opts)
	if r.Files[0].Verified != VerifiedSize || r.Files[1].Verified != VerifiedNone || r.Count(StatePresent) != 2 {
		t.Errorf("second run: %+v", r.Files)
	}
	if srv.total() != 2 {
		t.Errorf("%d requests", srv.total())
	}
}

func TestSyncCorruptCache(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(5000, 16)
	if err := os.WriteFile(filepath.Join(dir, CacheFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := Entry{Folder: "vae", File: "v", URL: srv.add("/v", data), SHA256: sum(data)}
	opts, log := testOptions(t, dir)
	if r := mustSync(t, []Entry{e}, opts); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if !strings.Contains(log.String(), "hash cache unreadable") {
		t.Error("no warning")
	}
	if f := mustSync(t, []Entry{e}, opts).Files[0]; f.Verified != VerifiedCache {
		t.Errorf("cache not rewritten: %+v", f)
	}
}

// Files download concurrently, at most Concurrency at a time.
func TestSyncConcurrent(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	var mu sync.Mutex
	inflight, peak := 0, 0
	both := make(chan struct{})
	var entries []Entry
	for i := range 5 {
		data := blob(20_000+i, uint64(100+i))
		path := fmt.Sprintf("/f%d", i)
		srv.behave[path] = func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
			mu.Lock()
			inflight++
			peak = max(peak, inflight)
			if inflight == 2 {
				select {
				case <-both:
				default:
					close(both)
				}
			}
			mu.Unlock()
			defer func() {
				mu.Lock()
				inflight--
				mu.Unlock()
			}()
			select { // the first two wait for each other
			case <-both:
			case <-time.After(10 * time.Second):
			}
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
			return true
		}
		entries = append(entries, Entry{Folder: "loras", File: fmt.Sprintf("f%d", i), URL: srv.add(path, data), SHA256: sum(data)})
	}
	opts, _ := testOptions(t, dir)
	opts.Concurrency = 2
	start := time.Now()
	r := mustSync(t, entries, opts)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if r.Count(StateDownloaded) != 5 {
		t.Errorf("%s", r.Summary())
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != 2 {
		t.Errorf("peak of %d downloads at once, want 2", peak)
	}
	if time.Since(start) > 8*time.Second {
		t.Error("the downloads did not overlap")
	}
}

func TestSyncCancel(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(100_000, 17)
	ctx, cancel := context.WithCancel(context.Background())
	srv.behave["/m"] = func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data[:1000])
		w.(http.Flusher).Flush()
		cancel()
		<-r.Context().Done()
		return true
	}
	e := Entry{Folder: "checkpoints", File: "m", URL: srv.add("/m", data), SHA256: sum(data)}
	opts, _ := testOptions(t, dir)
	opts.Concurrency = 1
	r, err := Sync(ctx, []Entry{e, {Folder: "checkpoints", File: "n", URL: srv.URL + "/n"}}, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	for _, f := range r.Files {
		if f.State != StateSkipped {
			t.Errorf("%+v", f)
		}
	}
	if len(srv.ranges("/n")) != 0 {
		t.Error("the second file was fetched after the cancel")
	}
}

func TestSyncNoDir(t *testing.T) {
	opts, _ := testOptions(t, filepath.Join(t.TempDir(), "nope"))
	if _, err := Sync(context.Background(), nil, opts); err == nil || !strings.Contains(err.Error(), "models directory") {
		t.Errorf("err %v", err)
	}
	file := filepath.Join(t.TempDir(), "f")
	_ = os.WriteFile(file, nil, 0o644)
	opts.Dir = file
	if _, err := Sync(context.Background(), nil, opts); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("err %v", err)
	}
}

func TestProgressLines(t *testing.T) {
	lb := &logBuf{}
	tk := &tracker{log: slog.New(slog.NewTextHandler(lb, nil))}
	tr := tk.start("checkpoints/m", phaseDownload, 0, 100_000_000)
	unknown := tk.start("vae/v", phaseDownload, 0, -1)
	t0 := tr.lastTime
	tr.done.Store(25_000_000)
	unknown.done.Store(3_500_000)
	tk.tick(t0.Add(time.Second))
	out := lb.String()
	for _, want := range []string{`msg=downloading file=checkpoints/m done="25.0 MB" total="100 MB" percent=25.0 speed="25.0 MB/s" eta=3s`,
		`file=vae/v done="3.50 MB" speed="3.5 MB/s"`} {
		if !strings.Contains(out, want) {
			t.Errorf("progress lacks %s:\n%s", want, out)
		}
	}
	tk.finish(tr)
	tk.finish(unknown)
	tk.tick(t0.Add(2 * time.Second))
	if lb.String() != out {
		t.Error("finished transfers still logged")
	}

	// And through Sync: a line per tick while a download runs.
	srv := newFileServer(t)
	data := blob(10_000, 18)
	ticked := make(chan struct{})
	srv.behave["/m"] = func(w http.ResponseWriter, r *http.Request, n int, data []byte) bool {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data[:100])
		w.(http.Flusher).Flush()
		select {
		case <-ticked:
		case <-time.After(10 * time.Second):
		}
		_, _ = w.Write(data[100:])
		return true
	}
	opts, log := testOptions(t, t.TempDir())
	opts.ProgressInterval = 10 * time.Millisecond
	opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(log, writerFunc(func(p []byte) {
		if bytes.Contains(p, []byte("msg=downloading")) {
			select {
			case <-ticked:
			default:
				close(ticked)
			}
		}
	})), nil))
	r := mustSync(t, []Entry{{Folder: "vae", File: "m", URL: srv.add("/m", data), SHA256: sum(data)}}, opts)
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	if !strings.Contains(log.String(), "msg=downloading file=vae/m") {
		t.Errorf("no progress line:\n%s", log)
	}
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

func TestParseContentRange(t *testing.T) {
	for in, want := range map[string][4]int64{
		"bytes 0-9/10":       {0, 9, 10, 1},
		"bytes 5-9/*":        {5, 9, -1, 1},
		"bytes 5-4/10":       {0, 0, 0, 0},
		"bytes */10":         {0, 0, 0, 0},
		"items 0-9/10":       {0, 0, 0, 0},
		"bytes 0-9":          {0, 0, 0, 0},
		"":                   {0, 0, 0, 0},
		"bytes -1-9/10":      {0, 0, 0, 0},
		" bytes 100-199/200": {100, 199, 200, 1},
	} {
		s, e, tot, ok := parseContentRange(in)
		okN := int64(0)
		if ok {
			okN = 1
		}
		if got := [4]int64{s, e, tot, okN}; got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.00 kB", 6_938_078_334: "6.94 GB", 23_800_000_000: "23.8 GB", 123_456_789_000_000: "123 TB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// A part that holds the whole file (an earlier run stopped before the
// rename) is verified and installed without downloading it again.
func TestSyncCompletePart(t *testing.T) {
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(30_000, 19)
	sized := Entry{Folder: "vae", File: "sized", URL: srv.add("/sized", data), SHA256: sum(data), Size: int64(len(data))}
	unsized := Entry{Folder: "vae", File: "unsized", URL: srv.add("/unsized", data), SHA256: sum(data)}
	writePart(t, dir, sized, data)
	writePart(t, dir, unsized, data)
	opts, _ := testOptions(t, dir)
	r := mustSync(t, []Entry{sized, unsized}, opts)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dir, sized.Path(), data)
	checkFile(t, dir, unsized.Path(), data)
	if got := srv.ranges("/sized"); len(got) != 0 {
		t.Errorf("sized: requests %q", got)
	}
	// Without a size, the server's 416 "bytes */N" says the part is whole.
	if got := srv.ranges("/unsized"); len(got) != 1 || got[0] != "bytes=30000-" {
		t.Errorf("unsized: requests %q", got)
	}
	for _, f := range r.Files {
		if f.State != StateDownloaded || f.Downloaded != 0 {
			t.Errorf("%+v", f)
		}
	}
}

// One process at a time syncs a models directory; the other waits.
func TestSyncWaitsForLock(t *testing.T) {
	old := lockPoll
	lockPoll = 5 * time.Millisecond
	t.Cleanup(func() { lockPoll = old })
	srv := newFileServer(t)
	dir := t.TempDir()
	data := blob(1000, 20)
	held, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if ok, err := tryLock(held); !ok || err != nil {
		t.Fatalf("lock: %v %v", ok, err)
	}
	waiting := make(chan struct{})
	var once sync.Once
	opts, log := testOptions(t, dir)
	opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(log, writerFunc(func(p []byte) {
		if bytes.Contains(p, []byte("waiting for it")) {
			once.Do(func() { close(waiting) })
		}
	})), nil))
	done := make(chan *Report, 1)
	go func() {
		r, _ := Sync(context.Background(), []Entry{{Folder: "vae", File: "v", URL: srv.add("/v", data)}}, opts)
		done <- r
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("Sync ran while the lock was held: %+v", r)
	case <-time.After(10 * time.Second):
		t.Fatal("Sync neither waited nor finished")
	}
	if srv.total() != 0 {
		t.Fatal("downloaded while the lock was held")
	}
	held.Close() // releases the lock
	select {
	case r := <-done:
		if r == nil || r.Err() != nil {
			t.Fatalf("after the lock: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sync did not go on after the lock was released")
	}
	if !strings.Contains(log.String(), "the other process is done") {
		t.Error("not logged")
	}

	// Cancelled while waiting.
	held2, _ := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR, 0)
	defer held2.Close()
	if ok, _ := tryLock(held2); !ok {
		t.Fatal("relock")
	}
	ctx, cancel := context.WithCancel(context.Background())
	waiting = make(chan struct{})
	once = sync.Once{}
	go func() { <-waiting; cancel() }()
	if _, err := Sync(ctx, nil, opts); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}
