//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package models

// diskFree returns -1: unknown on this system.
func diskFree(string) int64 { return -1 }
