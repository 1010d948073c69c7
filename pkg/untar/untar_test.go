package untar

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

// TestReaderCapsEntries: the entry past the cap is an error, not a header.
func TestReaderCapsEntries(t *testing.T) {
	var entries []testenv.TarEntry
	for _, n := range []string{"a", "b", "c"} {
		entries = append(entries, testenv.TarEntry{Header: tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg}})
	}
	data := testenv.Tar(t, entries...)
	r := NewReader(bytes.NewReader(data), 2)
	for i := 0; i < 2; i++ {
		if _, err := r.Next(); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if _, err := r.Next(); !errors.Is(err, ErrTooManyEntries) {
		t.Fatalf("third entry: %v, want ErrTooManyEntries", err)
	}
	r = NewReader(bytes.NewReader(data), 3)
	for i := 0; i < 3; i++ {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last entry: %v, want io.EOF", err)
	}
}

// failingReader gives some bytes, then an error.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

// TestWriteFile: exactly size bytes; short or failing data is
// ErrTruncated; an existing file is never written.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ok")
	if n, err := WriteFile(p, strings.NewReader("abcdefgh-and-more"), 8, 0o600); err != nil || n != 8 {
		t.Fatalf("%d %v", n, err)
	}
	if got, _ := os.ReadFile(p); string(got) != "abcdefgh" {
		t.Errorf("wrote %q", got)
	}
	if _, err := WriteFile(p, strings.NewReader("xxxxxxxx"), 8, 0o600); !errors.Is(err, os.ErrExist) {
		t.Errorf("an existing file: %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "abcdefgh" {
		t.Errorf("the existing file became %q", got)
	}
	n, err := WriteFile(filepath.Join(dir, "short"), strings.NewReader("abc"), 8, 0o600)
	if !errors.Is(err, ErrTruncated) || n != 3 || !strings.Contains(err.Error(), "3 of 8 bytes") {
		t.Errorf("short data: %d %v", n, err)
	}
	n, err = WriteFile(filepath.Join(dir, "broken"), &failingReader{n: 5}, 8, 0o600)
	if !errors.Is(err, ErrTruncated) || n != 5 || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("broken data: %d %v", n, err)
	}
}
