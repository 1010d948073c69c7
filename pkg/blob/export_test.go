package blob

// SetMaxCopyPart lowers the most bytes one copy request copies (the
// threshold of a multipart copy, and its part size) for a test and
// returns a function that restores it.
func SetMaxCopyPart(n int64) (restore func()) {
	old := maxCopyPart
	maxCopyPart = n
	return func() { maxCopyPart = old }
}
