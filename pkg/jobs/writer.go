package jobs

import "io"

// Writer writes through to W and reports the bytes written so far, with
// Total, after each write: a download's progress, to Progress.Update or a
// progress bar.
type Writer struct {
	W      io.Writer
	Total  int64
	Report func(done, total int64)
	done   int64
}

func (p *Writer) Write(b []byte) (int, error) {
	n, err := p.W.Write(b)
	p.done += int64(n)
	p.Report(p.done, p.Total)
	return n, err
}
