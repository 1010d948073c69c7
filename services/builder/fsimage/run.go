package fsimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"

	runenv "github.com/slipway/slipway/pkg/run"
)

// stderrLimit bounds how much of a tool's stderr is kept for messages.
const stderrLimit = 32 << 10

// headBuffer keeps the first stderrLimit bytes written to it.
type headBuffer struct {
	bytes.Buffer
	dropped bool
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := stderrLimit - h.Len(); room < len(p) {
		h.dropped = true
		if room > 0 {
			h.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return h.Buffer.Write(p)
}

// run runs a tool, hands each line of its standard output to onLine (which
// may be nil) as it comes, and returns its standard error. A failing exit
// is an error naming the tool and quoting its stderr.
func run(ctx context.Context, onLine func(string) error, name string, args ...string) (string, error) {
	return runTool(ctx, onLine, false, name, args...)
}

// runMerged is run for tools that report on stderr: onLine sees every line
// of both streams, in the order written, however long the report.
func runMerged(ctx context.Context, onLine func(string) error, name string, args ...string) error {
	_, err := runTool(ctx, onLine, true, name, args...)
	return err
}

func runTool(ctx context.Context, onLine func(string) error, merge bool, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = toolEnv()
	var stderr headBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if merge {
		cmd.Stderr = cmd.Stdout // the pipe's write end: one stream, in order
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	var lineErr error
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if onLine != nil && lineErr == nil {
			lineErr = onLine(sc.Text())
		}
	}
	if err := sc.Err(); err != nil && lineErr == nil {
		lineErr = fmt.Errorf("%s: reading its output: %w", name, err)
	}
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return stderr.String(), ctx.Err()
	}
	if waitErr != nil {
		return stderr.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(shortArgs(args), " "), waitErr, firstLines(stderr.String(), 8))
	}
	return stderr.String(), lineErr
}

// shortArgs keeps error messages readable when a tool got many arguments.
func shortArgs(args []string) []string {
	if len(args) > 12 {
		return append(append([]string{}, args[:12]...), "…")
	}
	return args
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("(%d more lines)", len(lines)-n))
	}
	return strings.Join(lines, "; ")
}

// toolEnv is the whole environment of mkfs, debugfs, xfs_db and xfs_repair:
// none of the builder's own (registry credentials, S3 keys). TZ=UTC:
// xfs_db prints timestamps as local dates, which ReadXFS parses.
func toolEnv() []string {
	return runenv.ChildEnv("TZ=UTC", "DEBUGFS_PAGER=__none__", "PAGER=__none__")
}
