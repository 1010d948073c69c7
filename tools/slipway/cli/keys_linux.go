package cli

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// watchKeys calls quit when q is typed on in, if in is a terminal. It turns
// off line buffering and echo (not signals: Ctrl-C still interrupts) and
// returns the function that restores the terminal; nil when in is not a
// terminal.
func watchKeys(in io.Reader, quit func()) (restore func()) {
	f, ok := in.(*os.File)
	if !ok {
		return nil
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil
	}
	raw := *old
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil
	}
	go func() {
		buf := make([]byte, 1)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			if n == 1 && (buf[0] == 'q' || buf[0] == 'Q') {
				quit()
				return
			}
		}
	}()
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}
