package store

// SetCompactMinFree lowers the free space that makes Open compact, for tests.
func SetCompactMinFree(n int64) (restore func()) {
	old := compactMinFree
	compactMinFree = n
	return func() { compactMinFree = old }
}

// SetPaceWrites turns the paced writeback of saved files on or off.
func SetPaceWrites(on bool) (restore func()) {
	old := paceWrites
	paceWrites = on
	return func() { paceWrites = old }
}
