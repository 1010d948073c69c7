package fetch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"

	"github.com/klauspost/compress/gzip"

	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/schemas"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// loopback opens the tests' servers, which listen on loopback.
var loopback = netguard.MustParse("127.0.0.0/8,::1/128")

// fastOpts keeps retries quick in tests and opens loopback.
func fastOpts() Options {
	return Options{RetryDelay: 10 * time.Millisecond, TempDir: os.TempDir(), Guard: loopback}
}

// dropOnce answers the first request with the headers and half of the body,
// then cuts the connection; later requests go to next.
type dropOnce struct {
	data    []byte
	etag    string
	dropped atomic.Bool
	next    http.Handler
}

func (d *dropOnce) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.dropped.CompareAndSwap(false, true) {
		conn, bufw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(bufw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: %s\r\nContent-Type: application/octet-stream\r\n\r\n", len(d.data), d.etag)
		bufw.Write(d.data[:len(d.data)/2])
		bufw.Flush()
		conn.Close()
		return
	}
	d.next.ServeHTTP(w, r)
}

// recorder logs the Range and If-Range headers of the requests it sees.
type recorder struct {
	mu     sync.Mutex
	ranges []string
	next   http.Handler
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.ranges = append(rec.ranges, r.Header.Get("Range")+"|"+r.Header.Get("If-Range"))
	rec.mu.Unlock()
	rec.next.ServeHTTP(w, r)
}

func serveContent(data []byte, etag string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, "disk.img", time.Unix(1700000000, 0), bytes.NewReader(data))
	})
}

func TestFetchHTTPResumesAfterDroppedConnection(t *testing.T) {
	data := randomBytes(t, 3<<20)
	etag := `"v1"`
	rec := &recorder{next: &dropOnce{data: data, etag: etag, next: serveContent(data, etag)}}
	srv := httptest.NewServer(rec)
	defer srv.Close()

	dst := filepath.Join(t.TempDir(), "out")
	var lastDone, lastTotal int64
	opts := fastOpts()
	opts.Checksums = []string{"sha256:" + sum(data)}
	opts.Progress = func(done, total int64) { lastDone, lastTotal = done, total }
	res, err := File(context.Background(), srv.URL+"/disk.img", dst, opts)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if res.SHA256Fetched != sum(data) || res.FetchedBytes != int64(len(data)) || res.Size != int64(len(data)) {
		t.Fatalf("result %+v, want sha %s size %d", res, sum(data), len(data))
	}
	assertFile(t, dst, data)
	if len(rec.ranges) != 2 {
		t.Fatalf("requests %q, want 2", rec.ranges)
	}
	want := fmt.Sprintf("bytes=%d-|%s", len(data)/2, etag)
	if rec.ranges[1] != want {
		t.Errorf("resume request Range|If-Range = %q, want %q", rec.ranges[1], want)
	}
	if lastDone != int64(len(data)) || lastTotal != int64(len(data)) {
		t.Errorf("last progress %d/%d, want %d/%d", lastDone, lastTotal, len(data), len(data))
	}
}

func TestFetchHTTPRestartsWhenRangeIgnored(t *testing.T) {
	data := randomBytes(t, 2<<20)
	var full atomic.Int32
	ignoreRange := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		full.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data) // 200 whatever the Range says
	})
	srv := httptest.NewServer(&dropOnce{data: data, etag: `"x"`, next: ignoreRange})
	defer srv.Close()

	dst := filepath.Join(t.TempDir(), "out")
	res, err := File(context.Background(), srv.URL+"/disk.img", dst, fastOpts())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if res.SHA256Fetched != sum(data) || res.FetchedBytes != int64(len(data)) {
		t.Fatalf("result %+v: a restart must not splice the two answers", res)
	}
	assertFile(t, dst, data)
	if full.Load() != 1 {
		t.Errorf("full answers after the drop: %d, want 1", full.Load())
	}
}

func TestFetchHTTPRestartsWhenFileChanged(t *testing.T) {
	old := randomBytes(t, 1<<20)
	data := randomBytes(t, 1<<20)
	// The file changes after the drop: If-Range must make the server send
	// the whole new version, never its second half after the old first.
	srv := httptest.NewServer(&dropOnce{data: old, etag: `"old"`, next: serveContent(data, `"new"`)})
	defer srv.Close()
	dst := filepath.Join(t.TempDir(), "out")
	res, err := File(context.Background(), srv.URL+"/d", dst, fastOpts())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if res.SHA256Fetched != sum(data) {
		t.Fatalf("sha %s, want the new version's %s", res.SHA256Fetched, sum(data))
	}
	assertFile(t, dst, data)
}

func TestFetchHTTPStalledConnectionResumes(t *testing.T) {
	data := randomBytes(t, 1<<20)
	var first atomic.Bool
	release := make(chan struct{})
	defer close(release)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(false, true) {
			w.Header().Set("ETag", `"s"`)
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:1000])
			w.(http.Flusher).Flush()
			select { // stall until the test ends or the client gives up
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		serveContent(data, `"s"`).ServeHTTP(w, r)
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	opts := fastOpts()
	opts.IdleTimeout = 300 * time.Millisecond
	res, err := File(context.Background(), srv.URL+"/d", filepath.Join(t.TempDir(), "out"), opts)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if res.SHA256Fetched != sum(data) {
		t.Fatalf("sha mismatch after stall")
	}
}

func TestFetchChecksumMismatch(t *testing.T) {
	data := randomBytes(t, 100<<10)
	srv := httptest.NewServer(serveContent(data, `"c"`))
	defer srv.Close()
	wrong := strings.Repeat("ab", 32)
	dst := filepath.Join(t.TempDir(), "out")
	opts := fastOpts()
	opts.Checksums = []string{"sha256:" + wrong}
	_, err := File(context.Background(), srv.URL+"/d", dst, opts)
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ChecksumError", err)
	}
	for _, d := range []string{wrong, sum(data)} {
		if !strings.Contains(err.Error(), d) {
			t.Errorf("error %q does not name digest %s", err, d)
		}
	}
	if !IsPermanent(err) {
		t.Error("a checksum mismatch must be permanent")
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("dst left behind after failure: %v", err)
	}
}

func TestFetchBadChecksumSyntax(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	for _, c := range []struct {
		sums []string
		want string
	}{
		{[]string{"md5:abcd"}, `want "md5:<32 hex digits>"`},
		{[]string{"sha512:" + a}, `want "sha512:<128 hex digits>"`},
		{[]string{"sha256:" + strings.Repeat("g", 64)}, `want "sha256:<64 hex digits>"`},
		{[]string{"crc32:abcd"}, "want md5:<32>, sha256:<64> or sha512:<128 hex digits>"},
		{[]string{a}, "want md5:<32>, sha256:<64> or sha512:<128 hex digits>"},
		{[]string{"sha256:" + a, "sha256:" + b}, "two sha256 checksums given (sha256:" + a + " and sha256:" + b + "): give one per algorithm"},
	} {
		opts := fastOpts()
		opts.Checksums = c.sums
		_, err := File(context.Background(), "http://127.0.0.1:1/x", filepath.Join(t.TempDir(), "o"), opts)
		if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want a permanent error containing %q", c.sums, err, c.want)
		}
	}
	// The same digest twice (checksum repeated in checksums) is one check.
	if got, err := ParseChecksums("sha256:"+a, "SHA256:"+strings.ToUpper(a), ""); err != nil || len(got) != 1 || got[0].String() != "sha256:"+a {
		t.Errorf("ParseChecksums of a repeated digest = %v, %v; want one sha256:%s", got, err, a)
	}
}

func TestFetchCompressions(t *testing.T) {
	// Compressible but not trivial: text with random parts, plus a zero run
	// that must come out as a hole.
	var plain bytes.Buffer
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&plain, "line %d %x\n", i, randomBytes(t, 8))
	}
	plain.Write(make([]byte, 4<<20))
	plain.WriteString("tail")
	data := plain.Bytes()
	dir := t.TempDir()
	raw := filepath.Join(dir, "plain")
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cmd  []string
		ext  string
	}{
		{None, nil, ""},
		{Gzip, []string{"gzip", "-k", "-f"}, ".gz"},
		{Bzip2, []string{"bzip2", "-k", "-f"}, ".bz2"},
		{XZ, []string{"xz", "-k", "-f", "-T1"}, ".xz"},
		{Zstd, []string{"zstd", "-q", "-f"}, ".zst"},
	}
	for _, c := range cases {
		label := c.name
		if label == None {
			label = "none"
		}
		t.Run(label, func(t *testing.T) {
			if c.cmd != nil {
				out, err := exec.Command(c.cmd[0], append(c.cmd[1:], raw)...).CombinedOutput()
				if err != nil {
					t.Fatalf("%v: %v\n%s", c.cmd, err, out)
				}
			}
			input, err := os.ReadFile(raw + c.ext)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(serveContent(input, `"z"`))
			defer srv.Close()
			dst := filepath.Join(t.TempDir(), "out")
			opts := fastOpts()
			opts.Checksums = []string{"sha256:" + sum(input)} // of the bytes as fetched
			res, err := File(context.Background(), srv.URL+"/f"+c.ext, dst, opts)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if res.Compression != c.name || res.Size != int64(len(data)) || res.FetchedBytes != int64(len(input)) {
				t.Fatalf("result %+v, want compression %q size %d fetched %d", res, c.name, len(data), len(input))
			}
			assertFile(t, dst, data)
			var st syscall.Stat_t
			if err := syscall.Stat(dst, &st); err != nil {
				t.Fatal(err)
			}
			if used := st.Blocks * 512; used >= int64(len(data)) {
				t.Errorf("output uses %d bytes on disk for %d: the zero run was written, not left a hole", used, len(data))
			}
		})
	}
}

func TestFetchCorruptCompressedDataIsPermanent(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(randomBytes(t, 200<<10))
	zw.Close()
	b := gz.Bytes()
	b[len(b)/2] ^= 0xff
	srv := httptest.NewServer(serveContent(b, `"g"`))
	defer srv.Close()
	_, err := File(context.Background(), srv.URL+"/x.gz", filepath.Join(t.TempDir(), "o"), fastOpts())
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("err = %v, want a permanent gzip data error", err)
	}
	// With a digest expected (of the file before the byte flipped), the
	// mismatch explains the corruption.
	good := bytes.Clone(b)
	good[len(good)/2] ^= 0xff
	opts := fastOpts()
	opts.Checksums = []string{"sha256:" + sum(good)}
	_, err = File(context.Background(), srv.URL+"/x.gz", filepath.Join(t.TempDir(), "o"), opts)
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Actual != "sha256:"+sum(b) || !IsPermanent(err) {
		t.Fatalf("err = %v, want a checksum mismatch naming the corrupt file's sha256", err)
	}
}

func TestFetchGzipBombStopsAtLimit(t *testing.T) {
	// 2 GiB of zeros, gzip'd on the fly: the server never holds it and the
	// client must stop after MaxBytes, long before the server is done.
	var served atomic.Int64
	bomb := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		zeros := make([]byte, 1<<20)
		for i := 0; i < 2048; i++ {
			if _, err := zw.Write(zeros); err != nil {
				return
			}
			served.Add(int64(len(zeros)))
		}
		zw.Close()
	})
	srv := httptest.NewServer(bomb)
	defer srv.Close()
	dst := filepath.Join(t.TempDir(), "o")
	opts := fastOpts()
	opts.MaxBytes = 64 << 20
	start := time.Now()
	_, err := File(context.Background(), srv.URL+"/bomb.gz", dst, opts)
	var le *LimitError
	if !errors.As(err, &le) || !IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent LimitError", err)
	}
	if want := "decompressed data exceeds the limit of 64 MiB"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s to stop a bomb", d)
	}
	if n := served.Load(); n >= 2<<30 {
		t.Errorf("server produced all %d bytes: the client did not stop early", n)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("dst left behind: %v", err)
	}
}

func TestFetchRefusesLocalAndUnknownSources(t *testing.T) {
	cases := map[string]string{
		"ftp://example.com/x":  `unsupported source scheme "ftp"; use s3://, http:// or https://`,
		"file:///etc/passwd":   "file://",
		"/etc/passwd":          "local path",
		"../../etc/passwd":     "local path",
		"etc/passwd":           "local path",
		"s3://bucket/key":      "no object store",
		"":                     "empty source",
		"gopher://example.com": `unsupported source scheme "gopher"`,
	}
	for src, want := range cases {
		_, err := File(context.Background(), src, filepath.Join(t.TempDir(), "o"), fastOpts())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("File(%q) err = %v, want it to contain %q", src, err, want)
		}
	}
}

func TestFetchHTTPStatusErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	_, err := File(context.Background(), srv.URL+"/missing", filepath.Join(t.TempDir(), "o"), fastOpts())
	var se *HTTPStatusError
	if !errors.As(err, &se) || se.StatusCode != 404 || !IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent 404", err)
	}
	if calls.Load() != 1 {
		t.Errorf("a 404 was retried: %d requests", calls.Load())
	}
}

// TestFetchHTTPFirstFailureIsNotRetried: a source that answers 503 at
// once fails the fetch at once, retryable, after one request: the
// command's redelivery retries it, where watchers see it. The next fetch
// gets the data.
func TestFetchHTTPFirstFailureIsNotRetried(t *testing.T) {
	data := randomBytes(t, 10<<10)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		serveContent(data, `"e"`).ServeHTTP(w, r)
	}))
	defer srv.Close()
	_, err := File(context.Background(), srv.URL+"/d", "", fastOpts())
	var se *HTTPStatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable || IsPermanent(err) ||
		se.FailureCode() != schemas.CodeUnavailable {
		t.Fatalf("err = %v, want a retryable 503 error", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	res, err := File(context.Background(), srv.URL+"/d", "", fastOpts())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	defer os.Remove(res.Path)
	assertFile(t, res.Path, data)
}

// TestFetchClassifiesWhereItFails: a name that does not resolve and a
// certificate the client refuses are permanent, with their codes, after
// one try.
func TestFetchClassifiesWhereItFails(t *testing.T) {
	start := time.Now()
	_, err := File(context.Background(), "https://nonexistent.invalid/x.qcow2", "", fastOpts())
	var coded interface{ FailureCode() string }
	if !IsPermanent(err) || !errors.As(err, &coded) || coded.FailureCode() != schemas.CodeHostNotFound {
		t.Errorf("unresolvable host: %v, want permanent host-not-found", err)
	}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the client refuses
	srv.StartTLS()
	defer srv.Close()
	_, err = File(context.Background(), srv.URL+"/d", "", fastOpts())
	if !IsPermanent(err) || !errors.As(err, &coded) || coded.FailureCode() != schemas.CodeTLSCertificate {
		t.Errorf("untrusted certificate: %v, want permanent tls-certificate", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s: something retried", d)
	}
}

func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	got := testenv.FileSHA256(t, path)
	if fi.Size() != int64(len(want)) || hex.EncodeToString(got[:]) != sum(want) {
		t.Fatalf("%s: %d bytes with sha %x, want %d bytes with sha %s", path, fi.Size(), got, len(want), sum(want))
	}
}

func TestFetchNotEnoughSpace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(int64(1)<<50)) // 1 PiB announced
		w.Write(make([]byte, 4096))
		w.(http.Flusher).Flush()
	}))
	defer srv.Close()
	dir := t.TempDir()
	_, err := File(context.Background(), srv.URL+"/huge", filepath.Join(dir, "o"), fastOpts())
	var ns *NoSpaceError
	if !errors.As(err, &ns) || !strings.Contains(err.Error(), "not enough space in "+dir) {
		t.Fatalf("err = %v, want not enough space in %s", err, dir)
	}
	if IsPermanent(err) {
		t.Error("a full disk may be freed: not permanent")
	}
}

func TestXZDictionaryLimit(t *testing.T) {
	// xz -9 asks for 64 MiB (accepted); a 1 GiB dictionary is refused
	// before the decoder allocates it.
	if d := lzma2Dict(28); d != 64<<20 {
		t.Fatalf("lzma2Dict(28) = %d, want 64 MiB", d)
	}
	small := compressWith(t, []string{"xz", "-9", "-T1", "-c"}, []byte("hello"))
	if err := checkXZDict(bufio.NewReader(bytes.NewReader(small))); err != nil {
		t.Fatalf("xz -9 refused: %v", err)
	}
	big := compressWith(t, []string{"xz", "--lzma2=dict=1GiB", "-T1", "-c"}, []byte("hello"))
	srv := httptest.NewServer(serveContent(big, `"x"`))
	defer srv.Close()
	_, err := File(context.Background(), srv.URL+"/x.xz", filepath.Join(t.TempDir(), "o"), fastOpts())
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "dictionary of 1 GiB exceeds") {
		t.Fatalf("err = %v, want the dictionary refused", err)
	}
}

func compressWith(t *testing.T, cmd []string, data []byte) []byte {
	t.Helper()
	c := exec.Command(cmd[0], cmd[1:]...)
	c.Stdin = bytes.NewReader(data)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
	return out
}

// TestFetchRefusesGuardedAddresses: without an allow list a loopback URL is
// refused before any request, at once and for good (no retries), naming
// the address and the setting; a redirect from an opened server to
// another address or to file:// is refused the same way.
func TestFetchRefusesGuardedAddresses(t *testing.T) {
	var hits atomic.Int32
	secret := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "secret")
	}))
	defer secret.Close()
	host := strings.TrimPrefix(secret.URL, "http://")

	opts := fastOpts()
	opts.Guard = nil
	opts.RetryDelay = time.Second // a retry would show in the time taken
	dst := filepath.Join(t.TempDir(), "o")
	start := time.Now()
	_, err := File(context.Background(), secret.URL+"/latest?token=x", dst, opts)
	want := "GET " + secret.URL + "/latest?token=x: refusing to connect to " + host + " (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if !IsPermanent(err) || time.Since(start) > 900*time.Millisecond {
		t.Errorf("a refusal must be permanent and not retried (took %s)", time.Since(start))
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("dst left behind: %v", err)
	}

	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-secret":
			http.Redirect(w, r, secret.URL+"/", http.StatusFound)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		}
	}))
	defer front.Close()
	opts.Guard = netguard.MustParse(strings.TrimPrefix(front.URL, "http://"))
	_, err = File(context.Background(), front.URL+"/to-secret", dst, opts)
	if _, ok := netguard.AsRefused(err); !ok || !IsPermanent(err) || !strings.Contains(err.Error(), "refusing to connect to "+host+" (loopback)") {
		t.Errorf("redirect to %s: %v, want a permanent refusal", host, err)
	}
	_, err = File(context.Background(), front.URL+"/to-file", dst, opts)
	if !IsPermanent(err) || !strings.Contains(err.Error(), "to file:///etc/passwd: only http and https are followed") {
		t.Errorf("redirect to file://: %v, want a permanent refusal", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the refused server saw %d requests", n)
	}
	// Opened, the same URL is fetched.
	opts.Guard = netguard.MustParse(host)
	if _, err := File(context.Background(), secret.URL+"/latest", dst, opts); err != nil || hits.Load() != 1 {
		t.Errorf("with %s open: %v (%d requests)", host, err, hits.Load())
	}
}
