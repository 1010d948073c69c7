package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

func newTopCmd(c *client) *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Watch images live: state and the progress of running imports (q to quit)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.top(cmd.Context(), once)
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "print one snapshot and exit")
	return cmd
}

// topRow is one image as top shows it.
type topRow struct {
	img      render.Image
	progress *render.Progress
	prevDone int64
	prevAt   time.Time
	lastLine time.Time // plain output: when a progress line was last printed
}

// topModel is top's view of the catalog, kept current by events.
type topModel struct {
	rows map[int]*topRow
}

func newTopModel(images []render.Image) *topModel {
	m := &topModel{rows: map[int]*topRow{}}
	for _, img := range images {
		m.rows[img.ID] = &topRow{img: img}
	}
	return m
}

// apply folds one event into the model and returns a line describing the
// change for plain output ("" when nothing a person needs changed).
func (m *topModel) apply(ev event, now time.Time) string {
	id, err := strconv.Atoi(ev.ID)
	if err != nil {
		return ""
	}
	row := m.rows[id]
	switch ev.Service + "." + ev.Name {
	case "catalog.image-created", "catalog.image-updated":
		var img render.Image
		if ev.decode(&img) != nil {
			return ""
		}
		if row == nil {
			m.rows[id] = &topRow{img: img}
			return fmt.Sprintf("image %d %q created (%s)", id, img.Name, img.State)
		}
		row.img = img
		return fmt.Sprintf("image %d %q updated", id, img.Name)
	case "catalog.state-changed":
		var sc schemas.StateChanged
		if ev.decode(&sc) != nil || row == nil {
			return ""
		}
		row.img.State = string(sc.To)
		row.img.Error = sc.Error
		if sc.To != schemas.ImageStateLocked {
			row.progress = nil
		}
		line := fmt.Sprintf("image %d %q %s -> %s", id, row.img.Name, sc.From, sc.To)
		if sc.Error != "" {
			line += ": " + sc.Error
		}
		return line
	case "catalog.image-deleted":
		delete(m.rows, id)
		return fmt.Sprintf("image %d deleted", id)
	case "catalog." + schemas.EventCatalogImageProgress:
		p, ok := imageProgress(ev)
		if !ok || row == nil {
			return ""
		}
		return row.progressed(p, now)
	}
	return ""
}

func (r *topRow) progressed(prog render.Progress, now time.Time) string {
	samePhase := r.progress != nil && r.progress.Label() == prog.Label()
	if samePhase {
		if dt := now.Sub(r.prevAt).Seconds(); dt > 0 && prog.Done >= r.prevDone {
			prog.Rate = float64(prog.Done-r.prevDone) / dt
		}
	}
	r.progress, r.prevDone, r.prevAt = &prog, prog.Done, now
	if samePhase && now.Sub(r.lastLine) < plainInterval {
		return ""
	}
	r.lastLine = now
	return fmt.Sprintf("image %d %s", r.img.ID, render.Line(prog))
}

var topColumns = []render.Column{
	{Title: "ID", Right: true},
	{Title: "NAME"},
	{Title: "DATASTORE"},
	{Title: "TYPE"},
	{Title: "SIZE", Right: true},
	{Title: "STATE"},
	{Title: "PHASE"},
	{Title: "PROGRESS", Right: true},
	{Title: "RATE", Right: true},
	{Title: "ERROR"},
}

// table writes the model, one row per image in ID order.
func (m *topModel) table(w io.Writer) error {
	rows := make([][]string, 0, len(m.rows))
	for _, id := range slices.Sorted(maps.Keys(m.rows)) {
		r := m.rows[id]
		phase, pct, rate := "", "", ""
		if r.progress != nil {
			phase = r.progress.Label()
			if p := r.progress.Percent(); p >= 0 {
				pct = strconv.Itoa(p) + "%"
			} else {
				pct = render.HumanSize(r.progress.Done)
			}
			if r.progress.Rate > 0 {
				rate = fmt.Sprintf("%.1f MB/s", r.progress.Rate/1e6)
			}
		}
		rows = append(rows, []string{
			strconv.Itoa(r.img.ID), r.img.Name, r.img.Datastore, render.ShortType(r.img.Type),
			render.HumanSize(r.img.Size), r.img.State, phase, pct, rate, oneLine(r.img.Error, 60),
		})
	}
	return render.Table(w, topColumns, rows)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// top shows the catalog live: redrawn in place on a terminal, as a
// snapshot followed by one line per change otherwise.
func (c *client) top(ctx context.Context, once bool) error {
	b, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer b.CloseNow()
	// Subscribe before the snapshot so no change falls between the two.
	w, err := watch(b.Conn(), b.Prefix(), "catalog.>")
	if err != nil {
		return err
	}
	defer w.close()
	images, err := listImages(ctx, b)
	if err != nil {
		return err
	}
	model := newTopModel(images)
	if once {
		return model.table(c.io.out)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if restore := watchKeys(c.io.in, cancel); restore != nil {
		defer restore()
	}
	tty := isTerminal(c.io.out)
	if !tty {
		if err := model.table(c.io.out); err != nil {
			return err
		}
	}
	redraw := time.NewTicker(250 * time.Millisecond)
	defer redraw.Stop()
	dirty := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-w.events():
			ev, ok := w.parse(msg)
			if !ok {
				continue
			}
			line := model.apply(ev, time.Now())
			if tty {
				dirty = dirty || line != "" || ev.Name == schemas.EventCatalogImageProgress
			} else if line != "" {
				fmt.Fprintf(c.io.out, "%s %s\n", time.Now().Format("15:04:05"), line)
			}
		case <-redraw.C:
			if tty && dirty {
				dirty = false
				var sb strings.Builder
				fmt.Fprintf(&sb, "\033[H\033[2Jslipway image top  %s  %d images  (q to quit)\n\n",
					time.Now().Format("15:04:05"), len(model.rows))
				_ = model.table(&sb)
				if _, err := io.WriteString(c.io.out, sb.String()); err != nil {
					return err
				}
			}
		}
	}
}
