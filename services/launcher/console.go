package launcher

import (
	"bytes"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// consolePoll is how often the console log is read for the ready line.
const consolePoll = 200 * time.Millisecond

// maxReadyLine bounds the line kept when looking for the ready line.
const maxReadyLine = 4096

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// consoleScanner reads what is appended to a console log and finds the
// ready line in it, carrying an unfinished last line over.
type consoleScanner struct {
	path    string
	offset  int64
	partial []byte
	buf     []byte
	found   bool
}

func newConsoleScanner(path string, offset int64) *consoleScanner {
	return &consoleScanner{path: path, offset: offset, buf: make([]byte, 64<<10)}
}

// next reads what was appended since the last call and returns the ready
// line the first time it shows.
func (c *consoleScanner) next() (string, bool) {
	if c.found {
		return "", false
	}
	f, err := os.Open(c.path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	if _, err := f.Seek(c.offset, io.SeekStart); err != nil {
		return "", false
	}
	for {
		n, err := f.Read(c.buf)
		c.offset += int64(n)
		data := append(c.partial, c.buf[:n]...)
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			if line, ok := readyIn(data[:i]); ok {
				c.found = true
				return line, true
			}
			data = data[i+1:]
		}
		if len(data) > maxReadyLine {
			data = data[len(data)-maxReadyLine:]
		}
		c.partial = append(c.partial[:0], data...)
		if err != nil || n == 0 {
			return "", false
		}
	}
}

// readyIn reports whether a console line is the ready line. Serial lines
// end in \r\n and may carry stray carriage returns in front.
func readyIn(line []byte) (string, bool) {
	s := strings.TrimRight(strings.TrimLeft(string(line), "\r"), "\r")
	if !strings.HasPrefix(s, ReadyLine) {
		return "", false
	}
	return s, true
}

// readConsole returns up to max bytes of the console log from offset, cut
// at a UTF-8 boundary, and the log's size.
func readConsole(path string, offset, max int64) (string, int64, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	size := fi.Size()
	if offset >= size {
		return "", size, nil
	}
	n := min(size-offset, max)
	b := make([]byte, n)
	k, err := f.ReadAt(b, offset)
	if err != nil && err != io.EOF {
		return "", size, err
	}
	b = b[:k]
	// Do not split a character: the rest comes with the next offset.
	for cut := 0; cut < utf8.UTFMax && len(b) > 0 && !utf8.Valid(b) && offset+int64(len(b)) < size; cut++ {
		b = b[:len(b)-1]
	}
	return string(b), size, nil
}
