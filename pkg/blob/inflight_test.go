package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
)

// isPart accepts the requests that upload a part of a multipart upload.
func isPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") != ""
}

// isPartNumber accepts the upload of part n.
func isPartNumber(n int) func(*http.Request) bool {
	return func(r *http.Request) bool { return isPart(r) && r.URL.Query().Get("partNumber") == fmt.Sprint(n) }
}

// proxiedStore is a Store with inFlight parts in flight whose requests go
// through a proxy the test steers, and a fresh bucket.
func proxiedStore(t *testing.T, inFlight int) (*blob.Store, *testenv.S3Proxy, string) {
	t.Helper()
	proxy, through := shared.Proxy(t)
	s, bucket := newStoreVia(t, through, inFlight)
	return s, proxy, bucket
}

// awaitPartsHeld waits until n part uploads are in the proxy at once; it
// returns an error rather than failing, so that a source may call it.
func awaitPartsHeld(proxy *testenv.S3Proxy, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		now, _ := proxy.InFlight(http.MethodPut)
		if now >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d part uploads in flight after 30s, want %d", now, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// progressLog checks a Put's Progress calls: never two at once, never a
// number smaller than the one before; it keeps the last.
type progressLog struct {
	inside   atomic.Bool
	mu       sync.Mutex
	last     int64
	problems []string
}

func (p *progressLog) report(n int64) {
	if !p.inside.CompareAndSwap(false, true) {
		p.problem("two Progress calls at once")
		return
	}
	defer p.inside.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < p.last {
		p.problems = append(p.problems, fmt.Sprintf("progress went back from %d to %d", p.last, n))
	}
	p.last = n
}

func (p *progressLog) problem(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.problems = append(p.problems, s)
}

// check fails t unless the calls were in order and ended at total.
func (p *progressLog) check(t *testing.T, total int64) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.problems {
		t.Error(s)
	}
	if p.last != total {
		t.Errorf("last progress = %d, want %d", p.last, total)
	}
}

// assertNoPutGoroutines fails when goroutines of package blob outlive the
// Put that started them. net/http may take a moment to drop the body of a
// request that was cancelled, so a few seconds are allowed.
func assertNoPutGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := blobGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of package blob left after Put returned:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blobGoroutines are the stacks of the goroutines with a frame in package
// blob (not blob_test: its frames read "blob_test.").
func blobGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/slipway/slipway/pkg/blob.") {
			left = append(left, g)
		}
	}
	return left
}

// putResult is what a Put run on another goroutine returned.
type putResult struct {
	info blob.Info
	err  error
}

func goPut(ctx context.Context, s *blob.Store, bucket, key string, r io.Reader, size int64, opts ...blob.PutOption) <-chan putResult {
	done := make(chan putResult, 1)
	go func() {
		info, err := s.Put(ctx, bucket, key, r, size, opts...)
		done <- putResult{info, err}
	}()
	return done
}

func awaitPut(t *testing.T, done <-chan putResult) putResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(2 * time.Minute):
		t.Fatal("Put did not return")
		return putResult{}
	}
}

// TestPutPartsInFlight: with K parts in flight (0: the default), K part
// uploads are in the store at once (the proxy holds them until there are
// K, and never sees more), and the object, its SHA-256, its S3 checksum and
// the progress are those of a serial upload.
func TestPutPartsInFlight(t *testing.T) {
	data := randomBytes(7*testPart+4321, 17)
	n := int64(len(data))
	for _, setting := range []int{1, 2, 4, 0} {
		k := setting
		if k == 0 {
			k = blob.DefaultPartsInFlight
		}
		for _, known := range []bool{true, false} {
			t.Run(fmt.Sprintf("setting=%d/known=%v", setting, known), func(t *testing.T) {
				s, proxy, bucket := proxiedStore(t, setting)
				ctx := context.Background()
				size := int64(-1)
				if known {
					size = n
				}
				var progress progressLog
				proxy.Hold(isPart)
				done := goPut(ctx, s, bucket, "k", onlyReader{bytes.NewReader(data)}, size, blob.Progress(progress.report))
				if err := awaitPartsHeld(proxy, k); err != nil {
					t.Fatal(err)
				}
				// Room for a bug to send more than k: the source is
				// memory, so another part would be read and sent at once.
				time.Sleep(100 * time.Millisecond)
				proxy.Hold(nil)
				r := awaitPut(t, done)
				if r.err != nil {
					t.Fatal(r.err)
				}
				if _, most := proxy.InFlight(http.MethodPut); most != k {
					t.Errorf("at most %d part uploads at once, want %d", most, k)
				}
				want := wantS3Checksum(data, testPart, known)
				if r.info.Size != n || r.info.SHA256 != sum(data) || r.info.S3Checksum != want {
					t.Errorf("Put = %+v, want size %d, SHA-256 %s, S3 checksum %s", r.info, n, sum(data), want)
				}
				progress.check(t, n)
				if h, hn, err := s.SHA256(ctx, bucket, "k"); err != nil || h != sum(data) || hn != n {
					t.Errorf("stored object: SHA-256 %s, %d bytes, %v; want %s, %d", h, hn, err, sum(data), n)
				}
				assertNoIncomplete(t, s, bucket)
				assertNoPutGoroutines(t)
			})
		}
	}
}

// stallingSource serves data, then, once the proxy holds want part
// uploads, fails with err.
type stallingSource struct {
	r     io.Reader
	proxy *testenv.S3Proxy
	want  int
	err   error
}

func (s *stallingSource) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != io.EOF {
		return n, err
	}
	if err := awaitPartsHeld(s.proxy, s.want); err != nil {
		return 0, err
	}
	return 0, s.err
}

// TestPutSourceFailsWithPartsInFlight: the source fails while three parts
// are in the store's hands; Put cancels them, waits for them, aborts the
// upload and returns the source's error naming the offset, leaving no
// object, no incomplete upload and no goroutine.
func TestPutSourceFailsWithPartsInFlight(t *testing.T) {
	boom := errors.New("disk on fire")
	for _, size := range []int64{-1, 6 * testPart} {
		t.Run(fmt.Sprint("size=", size), func(t *testing.T) {
			s, proxy, bucket := proxiedStore(t, 4)
			proxy.Hold(isPart)
			src := &stallingSource{r: bytes.NewReader(randomBytes(3*testPart+100, 5)), proxy: proxy, want: 3, err: boom}
			_, err := s.Put(context.Background(), bucket, "failing", src, size)
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want %v", err, boom)
			}
			if at := fmt.Sprintf("offset %d", 3*testPart+100); !strings.Contains(err.Error(), at) {
				t.Errorf("error %q does not say %s", err, at)
			}
			if _, most := proxy.InFlight(http.MethodPut); most != 3 {
				t.Errorf("%d parts were in flight, want 3: the test did not fail the source mid-upload", most)
			}
			assertNothingLeft(t, s, proxy, bucket, "failing")
		})
	}
}

// assertNothingLeft checks that a failed Put left no goroutine, no object
// and no incomplete upload, also once the parts the proxy held reach the
// store.
func assertNothingLeft(t *testing.T, s *blob.Store, proxy *testenv.S3Proxy, bucket, key string) {
	t.Helper()
	assertNoPutGoroutines(t)
	proxy.Hold(nil)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if now, _ := proxy.InFlight(http.MethodPut); now == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held part uploads did not end")
		}
	}
	if _, err := s.Stat(context.Background(), bucket, key); !blob.IsNotFound(err) {
		t.Errorf("object left after a failed Put (stat err %v)", err)
	}
	assertNoIncomplete(t, s, bucket)
}

// TestPutCancelWithPartsInFlight: the caller's context is cancelled while
// four parts are in flight and the reader waits for a buffer; Put returns
// the cancellation naming a part, and leaves nothing.
func TestPutCancelWithPartsInFlight(t *testing.T) {
	s, proxy, bucket := proxiedStore(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proxy.Hold(isPart)
	done := goPut(ctx, s, bucket, "cancelled", newGen(64*testPart), -1)
	if err := awaitPartsHeld(proxy, 4); err != nil {
		t.Fatal(err)
	}
	cancel()
	r := awaitPut(t, done)
	if !errors.Is(r.err, context.Canceled) || !strings.Contains(r.err.Error(), "part ") {
		t.Fatalf("err = %v, want the cancellation, naming a part", r.err)
	}
	assertNothingLeft(t, s, proxy, bucket, "cancelled")
}

// TestPutCorruptedPartInFlight: part 2 of four in flight is corrupted on
// the way; the store refuses it, Put names it (not the parts cancelled
// after it) and leaves nothing.
func TestPutCorruptedPartInFlight(t *testing.T) {
	s, proxy, bucket := proxiedStore(t, 4)
	data := randomBytes(6*testPart+100, 23)
	proxy.Hold(isPart)
	proxy.Corrupt(isPartNumber(2))
	done := goPut(context.Background(), s, bucket, "corrupt", bytes.NewReader(data), int64(len(data)))
	if err := awaitPartsHeld(proxy, 4); err != nil {
		t.Fatal(err)
	}
	proxy.Hold(nil)
	r := awaitPut(t, done)
	if !errors.Is(r.err, blob.ErrDigestRefused) || !strings.Contains(r.err.Error(), "upload part 2 ") {
		t.Fatalf("err = %v, want part 2 refused for its digest", r.err)
	}
	proxy.Corrupt(nil)
	assertNothingLeft(t, s, proxy, bucket, "corrupt")
}

// TestPutProgressRetriedPart: the store answers part 3 with SlowDown once,
// after reading all of it, and minio-go sends it again: progress, summed
// over four parts in flight, still only grows and ends at the size.
func TestPutProgressRetriedPart(t *testing.T) {
	s, proxy, bucket := proxiedStore(t, 4)
	data := randomBytes(6*testPart+100, 29)
	var slowed atomic.Bool
	proxy.SlowDownOnce(func(r *http.Request) bool {
		hit := isPartNumber(3)(r)
		slowed.CompareAndSwap(false, hit)
		return hit
	})
	var progress progressLog
	info, err := s.Put(context.Background(), bucket, "retried", bytes.NewReader(data), -1, blob.Progress(progress.report))
	if err != nil {
		t.Fatal(err)
	}
	if !slowed.Load() {
		t.Fatal("the proxy did not slow part 3 down: nothing was retried")
	}
	if info.SHA256 != sum(data) || info.Size != int64(len(data)) {
		t.Errorf("Put = %+v, want SHA-256 %s", info, sum(data))
	}
	progress.check(t, int64(len(data)))
}

func TestConfigFromEnvPartsInFlight(t *testing.T) {
	t.Setenv(blob.EnvKeysFile, "")
	t.Setenv("SLIPWAY_S3_ACCESS_KEY", "access")
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "secret")
	for v, want := range map[string]int{"": 0, "3": 3, " 1 ": 1} {
		t.Setenv(blob.EnvPartsInFlight, v)
		cfg, err := blob.ConfigFromEnv()
		if err != nil || cfg.PartsInFlight != want {
			t.Errorf("%s=%q: PartsInFlight %d, %v; want %d", blob.EnvPartsInFlight, v, cfg.PartsInFlight, err, want)
		}
	}
	for _, v := range []string{"0", "-2", "four", "2.5"} {
		t.Setenv(blob.EnvPartsInFlight, v)
		if _, err := blob.ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), blob.EnvPartsInFlight) {
			t.Errorf("%s=%q: err = %v, want one naming the variable", blob.EnvPartsInFlight, v, err)
		}
	}
}
