//go:build !linux

package cli

import "io"

// watchKeys is a no-op where the terminal is not managed: Ctrl-C quits.
func watchKeys(io.Reader, func()) func() { return nil }
