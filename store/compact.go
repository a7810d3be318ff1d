package store

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A bbolt file never shrinks: pages freed by deletes (a prune) or by big
// transactions stay in the file and in its freelist, which every commit
// writes. A freelist of a few hundred pages costs nothing; one of a
// hundred thousand, left by pruning a month of jobs, costs every commit a
// sort and a write of megabytes. So a store opened with much of its file
// free is first compacted: copied into a fresh file, which takes about as
// long as reading what is kept, once.
var compactMinFree int64 = 64 << 20 // bytes free before compacting is worth it (a var for tests)

const (
	compactMinFraction = 0.25     // of the file
	compactTxSize      = 64 << 20 // bytes copied per transaction of the copy
)

// sparse reports how much of the open file is free, and whether that is
// enough to compact.
func sparse(bdb *bolt.DB) (free, size int64, worth bool) {
	err := bdb.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	if err != nil || size == 0 {
		return 0, size, false
	}
	free = int64(bdb.Stats().FreePageN) * int64(bdb.Info().PageSize)
	return free, size, free >= compactMinFree && float64(free) >= compactMinFraction*float64(size)
}

// Compact rewrites the store file in dir into a fresh, dense file: a copy
// in a temporary file, synced, then renamed over the old one. The store
// must not be open. A crash midway leaves the old file as it was.
func Compact(dir string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	path := filepath.Join(dir, "workshop.db")
	tmp := path + ".compact"
	os.Remove(tmp) // left by an interrupted compaction
	began, before := time.Now(), fileSize(path)
	src, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("compact %s: %w", path, err)
	}
	defer src.Close()
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("compact %s: %w", path, err)
	}
	err = bolt.Compact(dst, src, compactTxSize)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", path, err)
	}
	log.Info("store compacted", "path", path, "took", time.Since(began).Round(time.Millisecond),
		"mib_before", before>>20, "mib_after", fileSize(path)>>20)
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
