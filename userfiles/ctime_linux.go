//go:build linux

package userfiles

import (
	"io/fs"
	"syscall"
	"time"
)

// ctimeOf is Python's os.path.getctime on Linux: the inode change time.
func ctimeOf(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fi.ModTime()
}
