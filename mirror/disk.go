package mirror

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// disk keeps a copy of the cache's 200 answers in a folder, so that after
// a server restart the participants' UI loads before any GPU host is back.
// It is a cache of a cache: a file that cannot be read is dropped, and
// nothing is fsynced.
type disk struct {
	dir string
	log *slog.Logger

	mu    sync.Mutex
	saved map[string]string // key -> ownETag of the copy on disk
}

const diskMagic = "workshop-mirror-1\n"

// diskHeader is an entry's metadata on disk; the bodies follow it.
type diskHeader struct {
	Key          string    `json:"key"`
	Status       int       `json:"status"`
	ContentType  string    `json:"content_type,omitempty"`
	Disposition  string    `json:"disposition,omitempty"`
	Language     string    `json:"language,omitempty"`
	Location     string    `json:"location,omitempty"`
	Origin       string    `json:"origin,omitempty"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	OwnETag      string    `json:"own_etag"`
	Gzipped      bool      `json:"gzipped,omitempty"`
	BrowserCC    string    `json:"browser_cc,omitempty"`
	MaxAge       int       `json:"max_age,omitempty"`
	Validated    time.Time `json:"validated"`
	Immutable    bool      `json:"immutable,omitempty"`
	GzLen        int       `json:"gz_len"`
	PlainLen     int       `json:"plain_len"`
	HasPlain     bool      `json:"has_plain,omitempty"`
}

func openDisk(dir string, log *slog.Logger) (*disk, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	return &disk{dir: dir, log: log, saved: map[string]string{}}, nil
}

func (d *disk) file(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(d.dir, hex.EncodeToString(sum[:16])+".entry")
}

// load reads the newest entries that fit in max bytes, newest first, and
// deletes the rest and any it cannot read. They come back stale: each is
// revalidated with the upstream before it is served as fresh, unless it
// is an immutable asset.
func (d *disk) load(max int64) []*entry {
	des, err := os.ReadDir(d.dir)
	if err != nil {
		d.log.Warn("reading the mirror's copy failed", "dir", d.dir, "err", err)
		return nil
	}
	type file struct {
		path string
		mod  time.Time
	}
	var files []file
	for _, de := range des {
		p := filepath.Join(d.dir, de.Name())
		if !strings.HasSuffix(de.Name(), ".entry") {
			os.Remove(p) // a temp file left by a crash
			continue
		}
		if fi, err := de.Info(); err == nil {
			files = append(files, file{p, fi.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return b.mod.Compare(a.mod) })
	var out []*entry
	var total int64
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range files {
		e, err := readEntry(f.path)
		if err == nil && d.file(e.key) != f.path {
			err = errors.New("name does not match its key")
		}
		if err == nil && total+e.size > max {
			err = errors.New("over the cache size")
		}
		if err != nil {
			d.log.Debug("dropping a copy of the mirror", "file", f.path, "err", err)
			os.Remove(f.path)
			continue
		}
		total += e.size
		d.saved[e.key] = e.ownETag
		out = append(out, e)
	}
	return out
}

func readEntry(path string) (*entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rest, ok := bytes.CutPrefix(b, []byte(diskMagic))
	if !ok || len(rest) < 4 {
		return nil, errors.New("not a mirror entry")
	}
	n := int(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if n > len(rest) {
		return nil, errors.New("truncated")
	}
	var h diskHeader
	if err := json.Unmarshal(rest[:n], &h); err != nil {
		return nil, err
	}
	rest = rest[n:]
	if h.GzLen < 0 || h.PlainLen < 0 || h.GzLen+h.PlainLen != len(rest) || h.Status != 200 || h.Key == "" {
		return nil, errors.New("truncated or inconsistent")
	}
	e := &entry{
		key: h.Key, status: h.Status,
		contentType: h.ContentType, disposition: h.Disposition, language: h.Language,
		location: h.Location, origin: h.Origin,
		etag: h.ETag, lastModified: h.LastModified, ownETag: h.OwnETag, gzipped: h.Gzipped,
		browserCC: h.BrowserCC, maxAge: h.MaxAge, validated: h.Validated, immutable: h.Immutable,
		hasPlain: h.HasPlain,
	}
	if h.GzLen > 0 {
		e.gz = rest[:h.GzLen:h.GzLen]
	}
	if h.HasPlain {
		e.plain = rest[h.GzLen:]
	}
	e.computeSize()
	return e, nil
}

// save writes e unless its copy on disk already has its bytes (a
// revalidation changes only times). Only 200 answers are kept.
func (d *disk) save(e *entry) {
	if e.status != 200 {
		d.remove(e.key)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if tag, ok := d.saved[e.key]; ok && tag == e.ownETag {
		return
	}
	plainLen := 0
	if e.hasPlain {
		plainLen = len(e.plain)
	}
	h, _ := json.Marshal(diskHeader{
		Key: e.key, Status: e.status,
		ContentType: e.contentType, Disposition: e.disposition, Language: e.language,
		Location: e.location, Origin: e.origin,
		ETag: e.etag, LastModified: e.lastModified, OwnETag: e.ownETag, Gzipped: e.gzipped,
		BrowserCC: e.browserCC, MaxAge: e.maxAge, Validated: e.validated, Immutable: e.immutable,
		GzLen: len(e.gz), PlainLen: plainLen, HasPlain: e.hasPlain,
	})
	tmp, err := os.CreateTemp(d.dir, ".tmp-*")
	if err != nil {
		d.log.Warn("keeping a copy of the mirror failed", "err", err)
		return
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	buf := make([]byte, 0, len(diskMagic)+4+len(h))
	buf = append(buf, diskMagic...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(h)))
	buf = append(buf, h...)
	_, err = tmp.Write(buf)
	if err == nil {
		_, err = tmp.Write(e.gz)
	}
	if err == nil && e.hasPlain {
		_, err = tmp.Write(e.plain)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), d.file(e.key))
	}
	if err != nil {
		d.log.Warn("keeping a copy of the mirror failed", "key", e.key, "err", err)
		return
	}
	d.saved[e.key] = e.ownETag
}

// remove deletes the copies of keys.
func (d *disk) remove(keys ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range keys {
		if _, ok := d.saved[k]; !ok {
			continue
		}
		delete(d.saved, k)
		if err := os.Remove(d.file(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("removing a copy of the mirror failed", "key", k, "err", err)
		}
	}
}
