package testenv

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TarEntry is one entry of a tar stream a test writes: its header and,
// for a regular file, its content, Header.Size bytes long.
type TarEntry struct {
	Header tar.Header
	Body   []byte
}

// Tar is the uncompressed tar stream of entries, headers as they are.
func Tar(t testing.TB, entries ...TarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(&e.Header); err != nil {
			t.Fatalf("tar header %q: %v", e.Header.Name, err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			t.Fatalf("tar body %q: %v", e.Header.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TarLayer is an image layer of the tar stream of entries.
func TarLayer(t testing.TB, entries ...TarEntry) v1.Layer {
	t.Helper()
	data := Tar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// ReadTar calls f with the header and the content of each entry of the
// tar stream r, in order; a stream that does not read fails the test.
func ReadTar(t testing.TB, r io.Reader, f func(h *tar.Header, content io.Reader)) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		f(h, tr)
	}
}
