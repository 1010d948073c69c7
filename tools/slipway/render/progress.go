package render

import (
	"fmt"
	"strings"
)

// Progress is one moment of a phase of work, as the catalog's
// image-progress events report it: the saga step (empty for work the CLI
// does itself, an upload) and the worker's phase in it.
type Progress struct {
	Step  string
	Phase string
	Done  int64
	Total int64   // 0 when unknown
	Rate  float64 // bytes per second, 0 when not measured yet
}

// Percent is the share done in whole percent, or -1 when the total is
// unknown.
func (p Progress) Percent() int {
	if p.Total <= 0 {
		return -1
	}
	return int(min(100, p.Done*100/p.Total))
}

// Label names the work: "step/phase", or the phase alone outside a saga.
func (p Progress) Label() string {
	if p.Step == "" {
		return p.Phase
	}
	return p.Step + "/" + p.Phase
}

// Bar renders p as a progress bar width characters wide between brackets:
//
//	convert/convert [#########...........]  45%  120.5 MB/s
//
// An unknown total shows the bytes done instead of a bar.
func Bar(p Progress, width int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s ", p.Label())
	if pct := p.Percent(); pct >= 0 {
		filled := width * pct / 100
		fmt.Fprintf(&b, "[%s%s] %3d%%", strings.Repeat("#", filled), strings.Repeat(".", width-filled), pct)
	} else {
		fmt.Fprintf(&b, "%s done", HumanSize(p.Done))
	}
	if p.Rate > 0 {
		fmt.Fprintf(&b, "  %.1f MB/s", p.Rate/1e6)
	}
	return b.String()
}

// Line renders p as one plain line for logs and non-terminals:
//
//	convert/convert 45% (1.2G of 2.6G) 120.5 MB/s
func Line(p Progress) string {
	var b strings.Builder
	b.WriteString(p.Label())
	if pct := p.Percent(); pct >= 0 {
		fmt.Fprintf(&b, " %d%% (%s of %s)", pct, HumanSize(p.Done), HumanSize(p.Total))
	} else {
		fmt.Fprintf(&b, " %s", HumanSize(p.Done))
	}
	if p.Rate > 0 {
		fmt.Fprintf(&b, " %.1f MB/s", p.Rate/1e6)
	}
	return b.String()
}
