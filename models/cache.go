package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CacheFile is the name of the hash cache in the models directory.
const CacheFile = ".workshop-models.json"

const cacheVersion = 1

// hashCache remembers the sha256 of files already hashed, keyed by their
// path relative to the models directory, and valid while their size and
// modification time are unchanged. It spares a restart from re-hashing tens
// of gigabytes.
type hashCache struct {
	path string

	mu    sync.Mutex
	files map[string]cacheEntry
}

type cacheEntry struct {
	Size     int64     `json:"size"`
	MtimeNS  int64     `json:"mtime_ns"`
	SHA256   string    `json:"sha256"`
	Verified time.Time `json:"verified"`
}

type cacheDoc struct {
	Version int                   `json:"version"`
	Files   map[string]cacheEntry `json:"files"`
}

// loadCache reads the cache in dir. A missing file is an empty cache; an
// unreadable or corrupt one is too, with the reason returned as a warning.
func loadCache(dir string) (*hashCache, error) {
	c := &hashCache{path: filepath.Join(dir, CacheFile), files: map[string]cacheEntry{}}
	data, err := os.ReadFile(c.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return c, nil
		}
		return c, err
	}
	var doc cacheDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return c, fmt.Errorf("%s: %v (starting afresh)", c.path, err)
	}
	if doc.Version != cacheVersion {
		return c, fmt.Errorf("%s: version %d, want %d (starting afresh)", c.path, doc.Version, cacheVersion)
	}
	if doc.Files != nil {
		c.files = doc.Files
	}
	return c, nil
}

// lookup returns the cached hash of rel if its size and mtime match fi.
func (c *hashCache) lookup(rel string, fi fs.FileInfo) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.files[rel]
	if !ok || e.Size != fi.Size() || e.MtimeNS != fi.ModTime().UnixNano() {
		return "", false
	}
	return e.SHA256, true
}

// put records the hash of rel and saves the cache.
func (c *hashCache) put(rel string, fi fs.FileInfo, sum string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.files[rel] = cacheEntry{Size: fi.Size(), MtimeNS: fi.ModTime().UnixNano(), SHA256: sum, Verified: time.Now().UTC()}
	return c.saveLocked()
}

// forget drops rel and saves the cache if it was there.
func (c *hashCache) forget(rel string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.files[rel]; !ok {
		return nil
	}
	delete(c.files, rel)
	return c.saveLocked()
}

// saveLocked writes the cache atomically: temporary file, fsync, rename,
// fsync of the directory.
func (c *hashCache) saveLocked() error {
	data, err := json.MarshalIndent(cacheDoc{Version: cacheVersion, Files: c.files}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(c.path, append(data, '\n'), 0o644)
}

func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
