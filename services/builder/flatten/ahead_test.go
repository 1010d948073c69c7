package flatten

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// bothWays runs f with the layers read ahead and read on the flattener's
// goroutine.
func bothWays(t *testing.T, f func(t *testing.T, readAhead bool)) {
	for name, readAhead := range map[string]bool{"read-ahead": true, "serial": false} {
		t.Run(name, func(t *testing.T) { f(t, readAhead) })
	}
}

var errStream = errors.New("the layer reader's own error")

// sourceLayer is a layer over a reader made afresh by open.
type sourceLayer struct {
	digest string
	open   func() io.Reader
}

func (l sourceLayer) Digest() string                       { return l.digest }
func (l sourceLayer) Uncompressed() (io.ReadCloser, error) { return io.NopCloser(l.open()), nil }

// errAtEnd returns err instead of io.EOF, with the last bytes of r, as
// pkg/oci's diff_id check does.
type errAtEnd struct {
	r   *bytes.Reader
	err error
}

func (e *errAtEnd) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if e.r.Len() == 0 && (err == nil || err == io.EOF) {
		return n, e.err
	}
	return n, err
}

// failAfter serves n bytes of r, then fails with errStream.
type failAfter struct {
	r io.Reader
	n int64
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errStream
	}
	p = p[:min(int64(len(p)), f.n)]
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

// blockAfter serves r, then calls blocked and blocks until ctx ends, as
// a network stream would whose peer stopped sending.
type blockAfter struct {
	ctx     context.Context
	r       io.Reader
	blocked func()
}

func (b *blockAfter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != io.EOF {
		return n, err
	}
	b.blocked()
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

// watched checks how Flatten uses a layer's reader: no Read may overlap
// or follow Close, and Close comes once.
type watched struct {
	Layer
	inRead, closes atomic.Int32
	misuse         atomic.Value // string
}

func (w *watched) Uncompressed() (io.ReadCloser, error) {
	rc, err := w.Layer.Uncompressed()
	if err != nil {
		return nil, err
	}
	return &watchedReader{rc: rc, w: w}, nil
}

type watchedReader struct {
	rc io.ReadCloser
	w  *watched
}

func (r *watchedReader) Read(p []byte) (int, error) {
	if r.w.closes.Load() > 0 {
		r.w.misuse.Store("Read after Close")
	}
	r.w.inRead.Add(1)
	defer r.w.inRead.Add(-1)
	return r.rc.Read(p)
}

func (r *watchedReader) Close() error {
	if r.w.inRead.Load() > 0 {
		r.w.misuse.Store("Close during a Read")
	}
	r.w.closes.Add(1)
	return r.rc.Close()
}

func (w *watched) check(t *testing.T) {
	t.Helper()
	if m, _ := w.misuse.Load().(string); m != "" {
		t.Errorf("layer %s: %s", w.Digest(), m)
	}
	if n := w.closes.Load(); n != 1 {
		t.Errorf("layer %s closed %d times, want once", w.Digest(), n)
	}
}

// noGoroutinesLeft fails unless the goroutines are back to before's
// count: Flatten waits for its reading goroutine, so they are at once,
// but give stragglers of earlier tests a moment.
func noGoroutinesLeft(t *testing.T, before int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before Flatten:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}

// bigLayerTar is a tar of a few files of 1 MiB, several read-ahead
// buffers' worth, with a bad entry at the end.
func bigLayerTar(t *testing.T, last te) []byte {
	body := strings.Repeat("x", 1<<20)
	return tarBytes(t, fileE("a", body, 0o644), fileE("b", body, 0o644), fileE("c", body, 0o644),
		fileE("d", body, 0o644), fileE("e", body, 0o644), last)
}

// TestLayerEndings: however a layer ends (its reader failing, a bad
// entry, the cap, cancellation, or well), the error names the layer,
// the reader is closed once and only after its last Read, and no
// goroutine is left behind.
func TestLayerEndings(t *testing.T) {
	bothWays(t, func(t *testing.T, readAhead bool) {
		good := layerOf(t, fileE("lower", "l", 0o644))
		big := bigLayerTar(t, fileE("f", "f", 0o644))
		cases := []struct {
			name  string
			layer func(ctx context.Context, cancel func()) Layer
			pol   Policy
			check func(t *testing.T, err error)
		}{
			{"ok", func(context.Context, func()) Layer { return bytesLayer(big) }, Policy{},
				func(t *testing.T, err error) {
					if err != nil {
						t.Fatal(err)
					}
				}},
			{"reader-fails-mid-file", func(context.Context, func()) Layer {
				return sourceLayer{"sha256:fails", func() io.Reader { return &failAfter{r: bytes.NewReader(big), n: 2<<20 + 4096} }}
			}, Policy{}, func(t *testing.T, err error) {
				wantLayerErr(t, err, errStream, "layer 2 (sha256:fails): entry \"c\": "+errStream.Error())
			}},
			{"reader-fails-in-a-header", func(context.Context, func()) Layer {
				return sourceLayer{"sha256:fails", func() io.Reader { return &failAfter{r: bytes.NewReader(big), n: 100} }}
			}, Policy{}, func(t *testing.T, err error) {
				wantLayerErr(t, err, errStream, "layer 2 (sha256:fails): reading the tar stream: "+errStream.Error())
			}},
			{"bad-entry-with-more-to-read", func(context.Context, func()) Layer {
				return layerOf(t, fileE("../up", "x", 0o644), fileE("big", strings.Repeat("y", 4<<20), 0o644))
			}, Policy{}, func(t *testing.T, err error) {
				wantErr(t, err, ErrUnsafe, "layer 2 (", `entry "../up": path climbs out of the root`)
			}},
			{"cap", func(context.Context, func()) Layer { return bytesLayer(big) }, Policy{MaxBytes: 3 << 20},
				func(t *testing.T, err error) {
					wantErr(t, err, ErrLimit, "layer 2 (", "decompressed size exceeds the limit of 3 MiB")
				}},
			{"cancelled-while-the-reader-blocks", func(ctx context.Context, cancel func()) Layer {
				// No end-of-archive blocks: the tar reader asks for more.
				return sourceLayer{"sha256:blocks", func() io.Reader {
					return &blockAfter{ctx: ctx, r: bytes.NewReader(big[:len(big)-1024]), blocked: cancel}
				}}
			}, Policy{}, func(t *testing.T, err error) {
				wantLayerErr(t, err, context.Canceled, "layer 2 (sha256:blocks)")
			}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				before := runtime.NumGoroutine()
				lower, upper := &watched{Layer: good}, &watched{Layer: c.layer(ctx, cancel)}
				_, err := flatten(ctx, []Layer{lower, upper}, newSandbox(t).dst, c.pol, readAhead)
				c.check(t, err)
				lower.check(t)
				upper.check(t)
				noGoroutinesLeft(t, before)
			})
		}
	})
}

// wantLayerErr checks that err is a *Error wrapping target that reads as
// want starts.
func wantLayerErr(t *testing.T, err, target error, want string) {
	t.Helper()
	var fe *Error
	if !errors.As(err, &fe) || !errors.Is(err, target) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q (%T), want a *flatten.Error wrapping %v starting %q", err, err, target, want)
	}
}

// TestErrorWithTheLastBytes: a reader that fails with its last bytes
// instead of ending, as a diff_id mismatch does, fails the entry those
// bytes belong to when nothing follows them (no padding, no end-of-archive
// blocks), and the layer in any case: the read-ahead hands the error over
// with the same bytes.
func TestErrorWithTheLastBytes(t *testing.T) {
	bothWays(t, func(t *testing.T, readAhead bool) {
		// Sizes in whole tar blocks: no padding follows the last body.
		for name, size := range map[string]int{"small": 512, "over-a-buffer": aheadBufferSize + 1024} {
			raw := tarBytes(t, fileE("first", "1", 0o644), fileE("last", strings.Repeat("z", size), 0o644))
			for _, c := range []struct {
				name string
				tar  []byte
				want string
			}{
				{"no-end-of-archive", raw[:len(raw)-1024], `layer 1 (sha256:mismatch): entry "last": ` + errStream.Error()},
				{"end-of-archive", raw, `layer 1 (sha256:mismatch): reading the end of the stream: ` + errStream.Error()},
			} {
				t.Run(name+"/"+c.name, func(t *testing.T) {
					l := sourceLayer{"sha256:mismatch", func() io.Reader { return &errAtEnd{r: bytes.NewReader(c.tar), err: errStream} }}
					_, err := flatten(context.Background(), []Layer{l}, newSandbox(t).dst, Policy{}, readAhead)
					wantLayerErr(t, err, errStream, c.want)
				})
			}
		}
	})
}

// TestCapAcrossLayers: the decompressed bytes cap counts every layer, and
// no layer reads more than one byte past it, read-ahead or not.
func TestCapAcrossLayers(t *testing.T) {
	bothWays(t, func(t *testing.T, readAhead bool) {
		raw := tarBytes(t, fileE("f", strings.Repeat("x", 3<<20), 0o644))
		l1, l2 := &counted{Layer: bytesLayer(raw)}, &counted{Layer: bytesLayer(raw)}
		const limit = 4 << 20
		_, err := flatten(context.Background(), []Layer{l1, l2}, newSandbox(t).dst, Policy{MaxBytes: limit}, readAhead)
		wantErr(t, err, ErrLimit, "layer 2 (", "exceeds the limit of 4 MiB")
		if l1.n != int64(len(raw)) || l1.n+l2.n > limit+1 {
			t.Fatalf("read %d + %d bytes with a limit of %d", l1.n, l2.n, limit)
		}
	})
}

// TestReadAheadHandsOverInOrder reads a stream through readAhead in odd
// sizes: the bytes come out as they went in, then io.EOF, and the
// buffers are recycled (the stream is many times their total).
func TestReadAheadHandsOverInOrder(t *testing.T) {
	src := make([]byte, 5*aheadBuffers*aheadBufferSize+12345)
	for i := range src {
		src[i] = byte(i * 7 / 3)
	}
	m := &meter{ctx: context.Background(), r: bytes.NewReader(src), room: int64(len(src))}
	bufs := make([][]byte, aheadBuffers)
	for i := range bufs {
		bufs[i] = make([]byte, aheadBufferSize)
	}
	a := startReadAhead(context.Background(), m, bufs)
	defer a.stop()
	var got bytes.Buffer
	p := make([]byte, 100_003)
	for {
		n, err := a.Read(p[:1+got.Len()%len(p)])
		got.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), src) {
		t.Fatalf("read %d bytes, not the %d written", got.Len(), len(src))
	}
	if n, err := a.Read(p); n != 0 || err != io.EOF {
		t.Fatalf("Read after the end: %d, %v", n, err)
	}
}

// TestPulledLayers flattens layers pulled through pkg/oci, read ahead or
// not: a layer whose content is not what the config's diff_id says fails,
// and no goroutine of the read-ahead or of pkg/oci's hashing is left,
// whether the layer was read to its end or given up early.
func TestPulledLayers(t *testing.T) {
	big := strings.Repeat("a", 600<<10) // over the hashing's buffer
	good := gzipped(t, tarBytes(t, fileE("a", big, 0o644), fileE("b", "b", 0o644)))
	early := gzipped(t, tarBytes(t, fileE("../up", "x", 0o644), fileE("a", big, 0o644)))
	wrong := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	cases := []struct {
		name   string
		gz     []byte
		diffID *v1.Hash
		want   string // in the error; "" for none
	}{
		{"right", good, nil, ""},
		{"wrong-diff-id", good, &wrong, "the config's diff_id is sha256:abab"},
		{"bad-first-entry", early, nil, `entry "../up": path climbs out of the root`},
	}
	bothWays(t, func(t *testing.T, readAhead bool) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				l := pulledLayer(t, c.gz, c.diffID)
				before := runtime.NumGoroutine()
				_, err := flatten(context.Background(), []Layer{l}, newSandbox(t).dst, Policy{}, readAhead)
				var fe *Error
				switch {
				case c.want == "" && err != nil:
					t.Fatal(err)
				case c.want != "" && (!errors.As(err, &fe) || fe.Layer != 1 || !strings.Contains(err.Error(), c.want)):
					t.Fatalf("error %v, want layer 1 failing with %q", err, c.want)
				}
				noGoroutinesLeft(t, before)
			})
		}
	})
}

// panicky panics in its first Read.
type panicky struct{}

func (panicky) Read([]byte) (int, error) { panic("the decompressor is broken") }

// TestReaderPanicReachesTheCaller: a layer reader's panic comes out of
// Flatten on the caller's goroutine, where it can be recovered, read-ahead
// or not, after the reader was closed and with no goroutine left.
func TestReaderPanicReachesTheCaller(t *testing.T) {
	bothWays(t, func(t *testing.T, readAhead bool) {
		before := runtime.NumGoroutine()
		l := &watched{Layer: sourceLayer{"sha256:panics", func() io.Reader { return panicky{} }}}
		func() {
			defer func() {
				r := recover()
				if !strings.Contains(fmt.Sprint(r), "the decompressor is broken") {
					t.Fatalf("recovered %v, want the reader's panic", r)
				}
			}()
			_, err := flatten(context.Background(), []Layer{l}, newSandbox(t).dst, Policy{}, readAhead)
			t.Fatalf("Flatten returned %v, want a panic", err)
		}()
		l.check(t)
		noGoroutinesLeft(t, before)
	})
}
