package testenv

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer one goroutine may write while another reads
// it: a service's log, a process's output. With Max > 0 it keeps only the
// last Max bytes written.
type Buffer struct {
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - b.Max; b.Max > 0 && extra > 0 {
		b.buf.Next(extra)
	}
	return len(p), nil
}

// Bytes returns a copy of what the buffer holds.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
