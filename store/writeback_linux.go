package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// writebackChunk is how much of a file being saved may be dirty in the
// page cache before it is written out.
const writebackChunk = 8 << 20

// pacedWriter writes a large file in steps the disk can take without a
// queue: each 8 MiB written is sent to the disk at once (sync_file_range),
// and the step before it is waited for. Left alone, the kernel keeps up to
// gigabytes of a big output dirty and the closing fsync flushes all of it
// at once; on ext4 every other fsync on the disk, the store's commits
// included, then waits behind that flush, for seconds.
type pacedWriter struct {
	f       *os.File
	off     int64 // bytes written
	started int64 // bytes handed to the disk
}

func newPacedWriter(f *os.File) *pacedWriter { return &pacedWriter{f: f} }

func (w *pacedWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	for err == nil && paceWrites && w.off-w.started >= writebackChunk {
		fd := int(w.f.Fd())
		// Start this step's writeback; wait for the previous step's.
		err = unix.SyncFileRange(fd, w.started, writebackChunk, unix.SYNC_FILE_RANGE_WRITE)
		if err == nil && w.started >= writebackChunk {
			err = unix.SyncFileRange(fd, w.started-writebackChunk, writebackChunk,
				unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		}
		w.started += writebackChunk
	}
	return n, err
}
