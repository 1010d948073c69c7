package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/slipway/slipway/pkg/run"
)

// xzMemLimit bounds what the xz child may allocate to decompress: the
// largest dictionary checkXZDict lets through, plus its buffers.
const xzMemLimit = "320MiB"

// xzCommand decompresses with an xz binary in a child process: about twice
// as fast as the Go decoder, and on another core than the fetch and its
// consumer. The child reads the compressed bytes from in (already hashed
// upstream) and gets an empty environment; a failure is reported in xz's
// own words.
type xzCommand struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr *bytes.Buffer
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

func startXZ(path string, in io.Reader) (*xzCommand, error) {
	ctx, cancel := context.WithCancel(context.Background())
	x := &xzCommand{stderr: &bytes.Buffer{}, cancel: cancel}
	x.cmd = exec.CommandContext(ctx, path, "-d", "-c", "-q", "-T1", "--memlimit-decompress="+xzMemLimit)
	x.cmd.Env = run.ChildEnv()
	// The copy into xz's stdin may be blocked on the network when xz is
	// stopped early; Wait does not wait for it longer than this.
	x.cmd.WaitDelay = 5 * time.Second
	x.cmd.Stdin, x.cmd.Stderr = in, x.stderr
	out, err := x.cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	x.out = out
	if err := x.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return x, nil
}

// Read reads the decompressed bytes; at their end it waits for xz, so a
// corrupt stream or a truncated input is an error, not a short EOF.
func (x *xzCommand) Read(p []byte) (int, error) {
	n, err := x.out.Read(p)
	if err == io.EOF {
		if werr := x.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (x *xzCommand) wait() error {
	x.once.Do(func() {
		err := x.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg := strings.TrimSpace(x.stderr.String())
			if msg == "" {
				msg = ee.Error()
			}
			err = errors.New(msg)
		}
		x.err = err
		x.cancel()
	})
	return x.err
}

// Close stops xz if it is still running.
func (x *xzCommand) Close() error {
	x.cancel()
	x.wait()
	return nil
}
