package oci_test

import (
	"archive/tar"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
)

// multiLayer is busybox plus four layers of random bytes.
func multiLayer(t *testing.T) v1.Image {
	t.Helper()
	layers := []v1.Layer{}
	for i := range 4 {
		buf := make([]byte, 64<<10+i)
		rand.Read(buf)
		layers = append(layers, layer(t, file("data/"+strconv.Itoa(i), string(buf))))
	}
	bb, _ := busyboxImage(t, "linux/amd64").Layers()
	return image(t, "linux/amd64", append(bb, layers...)...)
}

func TestPull(t *testing.T) {
	ctx := context.Background()
	var blobs counter
	host := testenv.OCIRegistry(t, blobs.wrap(isBlobGet))
	img := multiLayer(t)
	dig := push(t, host+"/big/app:1", img)
	cacheDir := t.TempDir()

	var mu sync.Mutex
	var calls, lastDone, lastTotal int64
	opts := oci.Options{Guard: loopback, Parallelism: 2, Progress: func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if done < lastDone {
			t.Errorf("progress went back from %d to %d", lastDone, done)
		}
		calls, lastDone, lastTotal = calls+1, done, total
	}}
	before := blobs.count()
	got, err := oci.Pull(ctx, host+"/big/app@"+dig, cacheDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if err := got.Wait(); err != nil {
		t.Fatal(err)
	}
	if got.Digest() != dig {
		t.Fatalf("digest %s, want %s", got.Digest(), dig)
	}
	m, _ := img.Manifest()
	var total int64
	for _, l := range m.Layers {
		total += l.Size
		fi, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", l.Digest.Hex))
		if err != nil || fi.Size() != l.Size {
			t.Fatalf("cache blob %s: %v", l.Digest, err)
		}
	}
	if calls == 0 || lastDone != total || lastTotal != total {
		t.Fatalf("progress: %d calls, last %d/%d, want %d", calls, lastDone, lastTotal, total)
	}
	if n := blobs.count() - before; n != len(m.Layers)+1 {
		t.Fatalf("%d blob fetches for %d layers and the config", n, len(m.Layers))
	}
	if blobs.maxIn > 2 {
		t.Fatalf("%d layer fetches at once, Parallelism 2", blobs.maxIn)
	}
	assertSameLayers(t, img, got)

	cfg, err := got.Config()
	if err != nil || cfg.Config.Cmd[0] != "/bin/sh" {
		t.Fatalf("config %+v %v", cfg, err)
	}

	// A second pull into the same cache fetches only the config.
	before = blobs.count()
	if _, err := pullAll(t, ctx, host+"/big/app@"+dig, cacheDir, oci.Options{Guard: loopback}); err != nil {
		t.Fatal(err)
	}
	if n := blobs.count() - before; n != 1 {
		t.Fatalf("cached pull fetched %d blobs, want just the config", n)
	}

	_, err = oci.Pull(ctx, host+"/big/app:1", cacheDir, oci.Options{Guard: loopback})
	mustContain(t, err, `pull "`+host+`/big/app:1": want a pinned reference repo@sha256:…`)
}

// assertSameLayers compares the pulled layers' uncompressed content with
// the original's, and reads every file of the busybox layer.
func assertSameLayers(t *testing.T, want v1.Image, got oci.Image) {
	t.Helper()
	wl, _ := want.Layers()
	gl, err := got.Layers()
	if err != nil || len(gl) != len(wl) {
		t.Fatalf("%d layers, want %d: %v", len(gl), len(wl), err)
	}
	for i := range wl {
		wd, _ := wl[i].DiffID()
		gd, _ := gl[i].DiffID()
		gdig, _ := gl[i].Digest()
		wdig, _ := wl[i].Digest()
		if wd != gd || gdig != wdig {
			t.Fatalf("layer %d: diff_id %s digest %s, want %s %s", i+1, gd, gdig, wd, wdig)
		}
		rc, err := gl[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		testenv.ReadTar(t, rc, func(h *tar.Header, content io.Reader) {
			if h.Name == "bin/busybox" {
				assertSameFile(t, content, "/bin/busybox")
			}
		})
		if _, err := io.Copy(io.Discard, rc); err != nil { // the diff_id check runs at EOF
			t.Fatalf("layer %d: %v", i+1, err)
		}
		rc.Close()
	}
}

func assertSameFile(t *testing.T, r io.Reader, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !sameStream(t, r, f) {
		t.Fatalf("content differs from %s", path)
	}
}

// sameStream compares two streams chunk by chunk.
func sameStream(t *testing.T, a, b io.Reader) bool {
	t.Helper()
	ba, bb := make([]byte, 32<<10), make([]byte, 32<<10)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || string(ba[:na]) != string(bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			if (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF) {
				return true
			}
			t.Fatalf("reading: %v / %v", ea, eb)
		}
	}
}

// tamper rewrites the body of GET .../blobs/<digest> with f.
func tamper(digest string, f func([]byte) []byte) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := f(rec.Body.Bytes())
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

func TestPullDigestMismatch(t *testing.T) {
	ctx := context.Background()
	img := multiLayer(t)
	m, _ := img.Manifest()
	second := m.Layers[1].Digest.String()
	for _, tc := range []struct {
		name string
		f    func([]byte) []byte
		want string
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, "layer 2 " + second + ": digest mismatch: the registry sent sha256:"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }, "layer 2 " + second + ": size mismatch"},
		{"longer", func(b []byte) []byte { return append(b, "trailing"...) }, "layer 2 " + second + ": size mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := testenv.OCIRegistry(t, tamper(second, tc.f))
			dig := push(t, host+"/bad/app:1", img)
			cacheDir := t.TempDir()
			img, err := oci.Pull(ctx, host+"/bad/app@"+dig, cacheDir, oci.Options{Guard: loopback})
			if err != nil {
				t.Fatal(err) // the layers are checked as they arrive, after Pull
			}
			defer img.Close()
			layers, _ := img.Layers()
			_, uerr := layers[1].Uncompressed()
			_, cerr := layers[1].Compressed()
			for _, err := range []error{img.Wait(), uerr, cerr, img.Close()} {
				mustContain(t, err, tc.want)
				var le *oci.LayerError
				if !errors.As(err, &le) || le.Layer != 2 || le.Digest != second {
					t.Fatalf("error %#v", err)
				}
				if strings.Contains(tc.want, "digest mismatch") != errors.Is(err, oci.ErrDigestMismatch) {
					t.Fatalf("errors.Is(%v, ErrDigestMismatch) wrong", err)
				}
			}
			if _, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", m.Layers[1].Digest.Hex)); !os.IsNotExist(err) {
				t.Fatalf("the bad blob is in the cache: %v", err)
			}
			leftovers, _ := filepath.Glob(filepath.Join(cacheDir, "blobs", "sha256", "*.part-*"))
			if len(leftovers) != 0 {
				t.Fatalf("temporary files left: %v", leftovers)
			}
		})
	}
}

func TestPullDiffIDMismatch(t *testing.T) {
	ctx := context.Background()
	host := testenv.OCIRegistry(t)
	img := busyboxImage(t, "linux/amd64")
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	lying, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dig := push(t, host+"/lying/app:1", lying)
	got, err := pullAll(t, ctx, host+"/lying/app@"+dig, t.TempDir(), oci.Options{Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	mustContain(t, err, "layer 1: uncompressed content is sha256:", "the config's diff_id is sha256:abab")
}

// hold serves half of GET .../blobs/<digest>, then holds the rest until
// release is closed or the client goes away; held is closed once the first
// half is out, so the client has a partial file.
type hold struct {
	digest        string
	held, release chan struct{}
}

func newHold(digest string) *hold {
	return &hold{digest: digest, held: make(chan struct{}), release: make(chan struct{})}
}

func (h *hold) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+h.digest) {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		close(h.held)
		select {
		case <-h.release:
			w.Write(body[len(body)/2:])
		case <-r.Context().Done():
		case <-time.After(time.Minute): // a safety net: the test fails, it does not hang
		}
	})
}

// readLayer reads a layer through to EOF, where its diff_id is checked.
func readLayer(l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func TestPullOverlapsDownloads(t *testing.T) {
	ctx := context.Background()
	img := multiLayer(t)
	m, _ := img.Manifest()
	h := newHold(m.Layers[1].Digest.String())
	host := testenv.OCIRegistry(t, h.wrap)
	dig := push(t, host+"/slow/app:1", img)
	cacheDir := t.TempDir()

	// Pull returns, and layer 1 reads through to the end, while layer 2's
	// download is stuck half way: a Pull that waited for every layer would
	// never get here.
	got, err := oci.Pull(ctx, host+"/slow/app@"+dig, cacheDir, oci.Options{Guard: loopback, Parallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	layers, _ := got.Layers()
	<-h.held
	if err := readLayer(layers[0]); err != nil {
		t.Fatalf("layer 1 while layer 2 downloads: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", m.Layers[1].Digest.Hex)); !os.IsNotExist(err) {
		t.Fatalf("layer 2 is in the cache before its download finished: %v", err)
	}
	close(h.release)
	for i, l := range layers[1:] {
		if err := readLayer(l); err != nil {
			t.Fatalf("layer %d: %v", i+2, err)
		}
	}
	if err := got.Wait(); err != nil {
		t.Fatal(err)
	}
	assertSameLayers(t, img, got)
}

func TestPullCancel(t *testing.T) {
	img := multiLayer(t)
	m, _ := img.Manifest()
	second := m.Layers[1].Digest
	for _, tc := range []struct {
		name string
		stop func(cancel context.CancelFunc, img oci.Image) error
		want error
		msg  string
	}{
		{"context", func(cancel context.CancelFunc, img oci.Image) error { cancel(); return img.Wait() }, context.Canceled, "layer 2 " + second.String()},
		{"close", func(_ context.CancelFunc, img oci.Image) error { return img.Close() }, nil, "image closed before the layer was downloaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h := newHold(second.String())
			host := testenv.OCIRegistry(t, h.wrap)
			dig := push(t, host+"/stuck/app:1", img)
			cacheDir := t.TempDir()
			// Progress tells when everything but layer 2's second half is in
			// the cache, which is when its partial file must exist.
			var total int64
			for _, l := range m.Layers {
				total += l.Size
			}
			partial := make(chan struct{})
			var once sync.Once
			progress := func(done, _ int64) {
				if done == total-m.Layers[1].Size+m.Layers[1].Size/2 {
					once.Do(func() { close(partial) })
				}
			}
			got, err := oci.Pull(ctx, host+"/stuck/app@"+dig, cacheDir, oci.Options{Guard: loopback, Parallelism: 2, Progress: progress})
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := got.Layers()
			<-partial
			leftovers, _ := filepath.Glob(filepath.Join(cacheDir, "blobs", "sha256", second.Hex+".part-*"))
			if len(leftovers) != 1 {
				t.Fatalf("want layer 2's partial file while it downloads, have %v", leftovers)
			}

			// Stopping returns once every download has ended, leaving no
			// partial file; layer 2 reports why it never arrived.
			if err := tc.stop(cancel, got); !errors.Is(err, tc.want) {
				t.Fatalf("stopping: %v, want %v", err, tc.want)
			}
			leftovers, _ = filepath.Glob(filepath.Join(cacheDir, "blobs", "sha256", "*.part-*"))
			if len(leftovers) != 0 {
				t.Fatalf("temporary files left: %v", leftovers)
			}
			if _, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", second.Hex)); !os.IsNotExist(err) {
				t.Fatalf("layer 2 is in the cache: %v", err)
			}
			err = readLayer(layers[1])
			mustContain(t, err, tc.msg)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("layer 2: %v, want %v", err, tc.want)
			}
			// Nothing is left running to write into a removed cache.
			if err := os.RemoveAll(cacheDir); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPullRefusesCorruptedBlob: a blob of the manifest's size whose bytes
// do not hash to its digest is refused (go-containerregistry's verification
// is the one hash over the compressed bytes), with an error naming the
// layer, the manifest's digest and the exact digest the registry sent. It
// is no RegistryError, so the builder takes it as final, and nothing of the
// blob stays in the cache. A mirror that sends it is passed over for the
// origin, which sends the right blob.
func TestPullRefusesCorruptedBlob(t *testing.T) {
	ctx := context.Background()
	img := multiLayer(t)
	m, _ := img.Manifest()
	n := len(m.Layers)
	last := m.Layers[n-1]
	var c corruption
	bad := testenv.OCIRegistry(t, c.wrap(last.Digest.String()))
	dig := push(t, bad+"/app:1", img)
	cacheDir := t.TempDir()

	_, err := pullAll(t, ctx, bad+"/app@"+dig, cacheDir, oci.Options{Guard: loopback})
	want := fmt.Sprintf("layer %d %s: digest mismatch: the registry sent %s", n, last.Digest, c.digest())
	if err == nil || err.Error() != want {
		t.Fatalf("pull of a corrupted blob: %v\nwant %s", err, want)
	}
	var le *oci.LayerError
	var re *oci.RegistryError
	if !errors.As(err, &le) || le.Layer != n || le.Digest != last.Digest.String() || !errors.Is(err, oci.ErrDigestMismatch) || errors.As(err, &re) {
		t.Fatalf("error %#v: want a LayerError for layer %d matching ErrDigestMismatch, no RegistryError", err, n)
	}
	if left, _ := filepath.Glob(filepath.Join(cacheDir, "blobs", "sha256", last.Digest.Hex+"*")); len(left) != 0 {
		t.Fatalf("the corrupted blob left %v in the cache", left)
	}

	origin := testenv.OCIRegistry(t)
	push(t, origin+"/app:1", img)
	got, err := pullAll(t, ctx, origin+"/app@"+dig, cacheDir, oci.Options{Guard: loopback, Mirrors: map[string][]string{origin: {bad}}})
	if err != nil {
		t.Fatalf("pull with a mirror sending the corrupted blob: %v", err)
	}
	assertSameLayers(t, img, got)
}

// TestPullHashesEachLayerOnce: each compressed layer passes through one
// SHA-256 on its way into the cache, go-containerregistry's verification;
// a refused one is hashed a second time, by pkg/oci, to name what the
// registry sent. Both take their hashers from crypto.SHA256.New (ggcr's
// v1.Hasher and v1.SHA256), so the test registers a counting constructor
// there and counts the hashers that ended on each digest.
func TestPullHashesEachLayerOnce(t *testing.T) {
	ctx := context.Background()
	img := multiLayer(t)
	m, _ := img.Manifest()
	corrupted := m.Layers[2]
	var c corruption
	good := testenv.OCIRegistry(t)
	bad := testenv.OCIRegistry(t, c.wrap(corrupted.Digest.String()))
	dig := push(t, good+"/app:1", img)
	push(t, bad+"/app:1", img)

	hashers := countSHA256(t)
	if _, err := pullAll(t, ctx, good+"/app@"+dig, t.TempDir(), oci.Options{Guard: loopback}); err != nil {
		t.Fatal(err)
	}
	sums := hashers.sums()
	for i, l := range m.Layers {
		if k := sums[l.Digest.String()]; k != 1 {
			t.Errorf("layer %d (%d bytes) was hashed %d times on its way into the cache, want once", i+1, l.Size, k)
		}
	}

	hashers = countSHA256(t)
	_, err := pullAll(t, ctx, bad+"/app@"+dig, t.TempDir(), oci.Options{Guard: loopback})
	if !errors.Is(err, oci.ErrDigestMismatch) {
		t.Fatalf("pull of a corrupted layer: %v, want a digest mismatch", err)
	}
	if k := hashers.sums()[c.digest()]; k != 2 {
		t.Errorf("the refused layer was hashed %d times, want twice (the verification, then naming it)", k)
	}
}

// corruption flips a byte in the middle of GET .../blobs/<digest> and
// keeps the digest of what it sent.
type corruption struct {
	mu   sync.Mutex
	sent string
}

func (c *corruption) wrap(digest string) func(http.Handler) http.Handler {
	return tamper(digest, func(b []byte) []byte {
		b[len(b)/2] ^= 0xff
		c.mu.Lock()
		defer c.mu.Unlock()
		c.sent = fmt.Sprintf("sha256:%x", sha256.Sum256(b))
		return b
	})
}

func (c *corruption) digest() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent
}

// hashers records the SHA-256 hashers made through crypto.SHA256.New.
type hashers struct {
	mu  sync.Mutex
	all []hash.Hash
}

// countSHA256 makes crypto.SHA256.New record its hashers until the test
// ends. The package's tests run one at a time, so nothing else hashes
// while it is swapped.
func countSHA256(t *testing.T) *hashers {
	h := &hashers{}
	crypto.RegisterHash(crypto.SHA256, func() hash.Hash {
		s := sha256.New()
		h.mu.Lock()
		defer h.mu.Unlock()
		h.all = append(h.all, s)
		return s
	})
	t.Cleanup(func() { crypto.RegisterHash(crypto.SHA256, sha256.New) })
	return h
}

// sums counts the hashers by the digest of what they were given.
func (h *hashers) sums() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, s := range h.all {
		out[fmt.Sprintf("sha256:%x", s.Sum(nil))]++
	}
	return out
}
