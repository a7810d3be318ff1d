//go:build linux || darwin || freebsd || netbsd || openbsd

package models

import "syscall"

// diskFree returns the bytes available to the agent on dir's file system,
// or -1 when unknown.
func diskFree(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(uint64(st.Bavail) * uint64(st.Bsize)) // the field types vary by OS
}
