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

// xzThreadedMemLimit bounds what xz's threaded decoder may take. A file
// of several blocks (what `xz -T` writes, and Linux Containers' tarballs
// are) decompresses on two threads: decompression is the longest stage of
// a rootfs import, and 0.3 of the 1 s it took for a 200 MiB rootfs
// (BenchmarkRootfsToQcow2). Two threads hold two blocks in and out, about
// 150 MiB with xz's default 24 MiB blocks; when a file's blocks need more
// than this, xz falls back to one thread rather than fail, so the child
// never holds more than this or what one thread needs (xzMemLimit).
const xzThreadedMemLimit = "160MiB"

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
	x.cmd = exec.CommandContext(ctx, path, "-d", "-c", "-q", "-T2", "--memlimit-mt-decompress="+xzThreadedMemLimit, "--memlimit-decompress="+xzMemLimit)
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
