package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/term"

	"github.com/slipway/slipway/schemas"
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

	phase      string // the label of the step and phase drawn
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
	p.show(render.Progress{Phase: phase, Done: done, Total: total}, now)
}

// show records prog (its rate is measured here) at now and draws when it
// is time to. A new step or phase starts a new measure and line.
func (p *progressView) show(prog render.Progress, now time.Time) {
	done, total := prog.Done, prog.Total
	newPhase := prog.Label() != p.phase
	if newPhase {
		p.phase, p.phaseStart, p.startDone = prog.Label(), now, done
	}
	// The rate is the phase's average: progress arrives in bursts (a part
	// read into memory at once, then sent), so rates between two reports
	// swing wildly.
	prog.Rate = 0
	if dt := now.Sub(p.phaseStart).Seconds(); dt >= 0.5 && done > p.startDone {
		prog.Rate = float64(done-p.startDone) / dt
	}
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

// imageProgress reads the catalog's image-progress event: the one
// progress the CLI follows, whatever saga step or worker it comes from, so
// a new step needs nothing here. It is checked against its schema first,
// so what reaches a terminal is never a control sequence someone
// published.
func imageProgress(ev event) (render.Progress, bool) {
	if ev.Service != schemas.ServiceCatalog || ev.Name != schemas.EventCatalogImageProgress ||
		schemas.Validate(schemas.KindEvent, ev.Service, ev.Name, ev.Data) != nil {
		return render.Progress{}, false
	}
	var p schemas.ImageProgress
	if ev.decode(&p) != nil || strconv.FormatInt(p.ID, 10) != ev.ID {
		return render.Progress{}, false
	}
	return render.Progress{Step: p.Step, Phase: p.Phase, Done: p.BytesDone, Total: p.BytesTotal}, true
}
