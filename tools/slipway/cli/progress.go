package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/slipway/slipway/tools/slipway/render"
)

// isTerminal reports whether w is a terminal; anything that is not an
// *os.File (a test buffer, a pipe wrapper) is not.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressView shows progress events: a bar redrawn in place on a
// terminal, otherwise plain lines, at most one a second (and one per
// phase change) so logs stay readable.
type progressView struct {
	w     io.Writer
	label string
	tty   bool

	phase      string
	phaseStart time.Time
	startDone  int64
	lastDraw   time.Time
	drawn      bool
}

func newProgressView(w io.Writer, label string) *progressView {
	return &progressView{w: w, label: label, tty: isTerminal(w)}
}

const (
	ttyInterval   = 100 * time.Millisecond
	plainInterval = time.Second
	barWidth      = 30
)

// update records bytes done of total (0: unknown) in phase at now and
// draws when it is time to.
func (p *progressView) update(phase string, done, total int64, now time.Time) {
	newPhase := phase != p.phase
	if newPhase {
		p.phase, p.phaseStart, p.startDone = phase, now, done
	}
	// The rate is the phase's average: progress arrives in bursts (a part
	// read into memory at once, then sent), so rates between two reports
	// swing wildly.
	var rate float64
	if dt := now.Sub(p.phaseStart).Seconds(); dt >= 0.5 && done > p.startDone {
		rate = float64(done-p.startDone) / dt
	}
	prog := render.Progress{Phase: phase, Done: done, Total: total, Rate: rate}
	if p.tty {
		if !newPhase && now.Sub(p.lastDraw) < ttyInterval && done != total {
			return
		}
		if newPhase && p.drawn {
			fmt.Fprintln(p.w) // keep the finished phase's last bar
		}
		fmt.Fprintf(p.w, "\r\033[K%s%s", p.prefix(), render.Bar(prog, barWidth))
	} else {
		if !newPhase && now.Sub(p.lastDraw) < plainInterval {
			return
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix(), render.Line(prog))
	}
	p.lastDraw, p.drawn = now, true
}

// done ends a bar drawn in place so the next output starts on its own
// line. It may be called more than once.
func (p *progressView) done() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
	}
	p.drawn = false
	p.phase = ""
}

func (p *progressView) prefix() string {
	if p.label == "" {
		return ""
	}
	return p.label + " "
}
