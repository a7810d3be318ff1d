package store

import (
	"context"
	"log/slog"
	"syscall"
	"time"
)

// DiskFree returns the free and total bytes of the file system holding dir.
func DiskFree(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// WatchDisk warns, once a minute while it lasts, when the data disk has
// less than 2 GiB or 5% free: outputs and the store stop being written
// when it is full.
func WatchDisk(ctx context.Context, dir string, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if free, total, err := DiskFree(dir); err == nil && (free < 2<<30 || free*20 < total) {
			log.Warn("the data disk is nearly full: prune old jobs (workshop prune) or add space",
				"dir", dir, "free_mib", free>>20, "total_mib", total>>20)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
