package store

// SetCompactMinFree lowers the free space that makes Open compact, for tests.
func SetCompactMinFree(n int64) (restore func()) {
	old := compactMinFree
	compactMinFree = n
	return func() { compactMinFree = old }
}
