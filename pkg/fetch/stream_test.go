package fetch

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func md5Of(b []byte) string    { s := md5.Sum(b); return hexOf(s[:]) }
func sha512Of(b []byte) string { s := sha512.Sum512(b); return hexOf(s[:]) }

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// TestStreamResumesAfterDroppedConnection: the connection drops half-way;
// the stream asks for the rest with Range/If-Range and the consumer reads
// the whole decompressed data once, every digest checked at its end.
func TestStreamResumesAfterDroppedConnection(t *testing.T) {
	plain := randomBytes(t, 3<<20)
	data := zstdBytes(t, plain)
	etag := `"v1"`
	rec := &recorder{next: &dropOnce{data: data, etag: etag, next: serveContent(data, etag)}}
	srv := httptest.NewServer(rec)
	defer srv.Close()

	opts := fastOpts()
	opts.Checksums = []string{"md5:" + md5Of(data), "sha256:" + sum(data), "sha512:" + sha512Of(data)}
	s, err := Open(context.Background(), srv.URL+"/root.tar.zst", opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("got %d bytes, want the %d decompressed bytes", len(got), len(plain))
	}
	if s.Compression() != Zstd || s.FetchedBytes() != int64(len(data)) {
		t.Errorf("compression %q, fetched %d; want zstd, %d", s.Compression(), s.FetchedBytes(), len(data))
	}
	if s.Sums()[SHA512] != sha512Of(data) || s.Sums()[MD5] != md5Of(data) || s.Sums()[SHA256] != sum(data) {
		t.Errorf("sums %v", s.Sums())
	}
	if err := s.Verify(); err != nil {
		t.Errorf("Verify after the end: %v", err)
	}
	want := fmt.Sprintf("bytes=%d-|%s", len(data)/2, etag)
	if len(rec.ranges) != 2 || rec.ranges[1] != want {
		t.Errorf("requests Range|If-Range = %q, want a second one %q", rec.ranges, want)
	}
}

// TestStreamChecksumAtEOF: a tampered source reads to its end, which is a
// ChecksumError naming the source, the algorithm, expected and actual.
func TestStreamChecksumAtEOF(t *testing.T) {
	data := randomBytes(t, 1<<20)
	srv := httptest.NewServer(serveContent(data, `"t"`))
	defer srv.Close()
	for _, algo := range []string{MD5, SHA256, SHA512} {
		wrong := map[string]string{MD5: md5Of(nil), SHA256: sum(nil), SHA512: sha512Of(nil)}[algo]
		actual := map[string]string{MD5: md5Of(data), SHA256: sum(data), SHA512: sha512Of(data)}[algo]
		opts := fastOpts()
		opts.Checksums = []string{algo + ":" + wrong}
		s, err := Open(context.Background(), srv.URL+"/rootfs.tar", opts)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, s)
		var ce *ChecksumError
		if !errors.As(err, &ce) || !IsPermanent(err) {
			t.Fatalf("%s: read %d bytes, err %v; want a ChecksumError at the end", algo, n, err)
		}
		want := fmt.Sprintf("checksum mismatch for %s/rootfs.tar: expected %s:%s, got %s:%s", srv.URL, algo, wrong, algo, actual)
		if err.Error() != want {
			t.Errorf("%s: err = %q, want %q", algo, err, want)
		}
		if verr := s.Verify(); !errors.As(verr, &ce) {
			t.Errorf("%s: Verify after a mismatch = %v", algo, verr)
		}
		s.Close()
	}
}

// TestStreamVerifyReadsTheRest: a tar reader stops at the end-of-archive
// blocks; Verify hashes what it left, padding and trailing bytes alike.
func TestStreamVerifyReadsTheRest(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "etc/os-release", Mode: 0o644, Size: 10, Typeflag: tar.TypeReg})
	tw.Write([]byte("ID=alpine\n"))
	tw.Close()
	good := append(buf.Bytes(), make([]byte, 8192)...) // padding, as tar(1) writes it
	bad := append(bytes.Clone(good[:len(good)-1]), 1)  // tampered after the archive's end
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "x", time.Unix(1700000000, 0), bytes.NewReader(map[string][]byte{"/good": good, "/bad": bad}[r.URL.Path]))
	}))
	defer srv.Close()
	for path, wantErr := range map[string]bool{"/good": false, "/bad": true} {
		opts := fastOpts()
		opts.Checksums = []string{"sha256:" + sum(good)}
		s, err := Open(context.Background(), srv.URL+path, opts)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(s)
		for {
			if _, err := tr.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		err = s.Verify()
		if (err != nil) != wantErr || (wantErr && !strings.Contains(err.Error(), "expected sha256:"+sum(good))) {
			t.Errorf("%s: Verify = %v, want error %v", path, err, wantErr)
		}
		s.Close()
	}
}

// TestStreamCannotRestart: a server that ignores Range after a drop would
// make the stream splice two answers: it fails, retryable, instead.
func TestStreamCannotRestart(t *testing.T) {
	data := randomBytes(t, 2<<20)
	ignoreRange := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data)
	})
	srv := httptest.NewServer(&dropOnce{data: data, etag: `"x"`, next: ignoreRange})
	defer srv.Close()
	s, err := Open(context.Background(), srv.URL+"/d", fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = io.Copy(io.Discard, s)
	if !errors.Is(err, errCannotResume) || IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable %v", err, errCannotResume)
	}
}

// TestStreamOpenFailures: what File refuses, Open refuses before reading.
func TestStreamOpenFailures(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	for src, want := range map[string]string{
		"/etc/passwd":        "is a local path",
		srv.URL + "/missing": "404",
	} {
		_, err := Open(context.Background(), src, fastOpts())
		if err == nil || !strings.Contains(err.Error(), want) || !IsPermanent(err) {
			t.Errorf("Open(%q) = %v, want a permanent error containing %q", src, err, want)
		}
	}
}

// TestXZBinary: with an xz program set, xz data is decompressed by it, in
// a child process, for a stream and a file alike, hashed as fetched; a
// corrupt stream fails for good in xz's words.
func TestXZBinary(t *testing.T) {
	xzPath, err := exec.LookPath("xz")
	if err != nil {
		t.Fatal("xz is needed (make deps): ", err)
	}
	plain := append(randomBytes(t, 1<<20), bytes.Repeat([]byte("slipway "), 1<<17)...)
	cmd := exec.Command(xzPath, "-c", "-T1")
	cmd.Stdin = bytes.NewReader(plain)
	data, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)/2] ^= 0xff
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := map[string][]byte{"/ok.xz": data, "/corrupt.xz": corrupt}[r.URL.Path]
		http.ServeContent(w, r, "x", time.Unix(1700000000, 0), bytes.NewReader(body))
	}))
	defer srv.Close()
	opts := fastOpts()
	opts.XZBinary = xzPath
	opts.Checksums = []string{"sha512:" + sha512Of(data)}

	s, err := Open(context.Background(), srv.URL+"/ok.xz", opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	s.Close()
	if err != nil || !bytes.Equal(got, plain) || s.Compression() != XZ {
		t.Fatalf("stream: %d bytes, err %v; want the %d decompressed bytes", len(got), err, len(plain))
	}
	res, err := File(context.Background(), srv.URL+"/ok.xz", "", opts)
	if err != nil || res.Size != int64(len(plain)) || res.Sums[SHA512] != sha512Of(data) {
		t.Fatalf("file: %+v, %v", res, err)
	}
	os.Remove(res.Path)

	opts.Checksums = nil
	s, err = Open(context.Background(), srv.URL+"/corrupt.xz", opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, s)
	s.Close()
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "xz data: ") {
		t.Fatalf("corrupt xz: err %v, want a permanent error in xz's words", err)
	}
	// A multi-block file (as `xz -T` writes) goes through xz's threaded
	// decoder: the same bytes come out, and a flipped byte in a later
	// block is still an error in xz's words.
	blocks := compressWith(t, []string{xzPath, "-c", "-T2", "--block-size=256KiB"}, plain)
	badBlocks := bytes.Clone(blocks)
	badBlocks[len(badBlocks)*3/4] ^= 0xff
	for _, c := range []struct {
		body []byte
		ok   bool
	}{{blocks, true}, {badBlocks, false}} {
		bsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.ServeContent(w, r, "x", time.Unix(1700000000, 0), bytes.NewReader(c.body))
		}))
		s, err := Open(context.Background(), bsrv.URL+"/blocks.xz", opts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(s)
		s.Close()
		bsrv.Close()
		if c.ok && (err != nil || !bytes.Equal(got, plain)) {
			t.Fatalf("multi-block xz: %d bytes, err %v; want the %d decompressed bytes", len(got), err, len(plain))
		}
		if !c.ok && (err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "xz data: ")) {
			t.Fatalf("corrupt multi-block xz: err %v, want a permanent error in xz's words", err)
		}
	}
	// With the digest of the good file expected, the flipped byte is
	// reported as the mismatch it is, naming both digests, not in xz's
	// words.
	opts.Checksums = []string{"sha512:" + sha512Of(data)}
	s, err = Open(context.Background(), srv.URL+"/corrupt.xz", opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, s)
	s.Close()
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Expected != "sha512:"+sha512Of(data) || ce.Actual != "sha512:"+sha512Of(corrupt) {
		t.Fatalf("corrupt xz with a sha512: err %v, want a checksum mismatch naming both digests", err)
	}
	// Closing a stream mid-way stops xz and returns.
	s, err = Open(context.Background(), srv.URL+"/ok.xz", opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a half-read xz stream did not return")
	}
}
