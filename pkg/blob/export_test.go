package blob

// SetMaxSingleCopy lowers the one-request copy limit for a test and
// returns a function that restores it.
func SetMaxSingleCopy(n int64) (restore func()) {
	old := maxSingleCopy
	maxSingleCopy = n
	return func() { maxSingleCopy = old }
}
