package flatten

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/services/builder/tree"
)

// mtime is the modification time of every entry the tests write.
const mtime = 1700000000

// te is one tar entry: a header and, for regular files, its body.
type te struct {
	h    tar.Header
	body string
}

func hdr(name string, typ byte, mode int64) te {
	return te{h: tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: time.Unix(mtime, 0), Format: tar.FormatPAX}}
}

func dirE(name string, mode int64) te { return hdr(name, tar.TypeDir, mode) }

func fileE(name, body string, mode int64) te {
	e := hdr(name, tar.TypeReg, mode)
	e.body, e.h.Size = body, int64(len(body))
	return e
}

func symE(name, target string) te {
	e := hdr(name, tar.TypeSymlink, 0o777)
	e.h.Linkname = target
	return e
}

func linkE(name, target string) te {
	e := hdr(name, tar.TypeLink, 0o755)
	e.h.Linkname = target
	return e
}

func whE(name string) te { return hdr(name, tar.TypeReg, 0o644) }

func devE(name string, typ byte, mode, major, minor int64) te {
	e := hdr(name, typ, mode)
	e.h.Devmajor, e.h.Devminor = major, minor
	return e
}

func (e te) own(uid, gid int) te {
	e.h.Uid, e.h.Gid = uid, gid
	return e
}

func (e te) mode(m int64) te {
	e.h.Mode = m
	return e
}

func (e te) xattr(k, v string) te {
	if e.h.PAXRecords == nil {
		e.h.PAXRecords = map[string]string{}
	}
	e.h.PAXRecords["SCHILY.xattr."+k] = v
	return e
}

// tarBytes writes entries as one uncompressed tar stream.
func tarBytes(t testing.TB, entries ...te) []byte {
	t.Helper()
	tes := make([]testenv.TarEntry, len(entries))
	for i, e := range entries {
		tes[i] = testenv.TarEntry{Header: e.h, Body: []byte(e.body)}
	}
	return testenv.Tar(t, tes...)
}

// bytesLayer is a Layer over an uncompressed tar stream in memory.
type bytesLayer []byte

func (l bytesLayer) Digest() string {
	s := sha256.Sum256(l)
	return "sha256:" + hex.EncodeToString(s[:])
}

func (l bytesLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l)), nil
}

func layerOf(t testing.TB, entries ...te) Layer { return bytesLayer(tarBytes(t, entries...)) }

// sandbox is a temporary directory holding dst ("root") and nothing else,
// so that anything Flatten wrote outside dst shows up next to it.
type sandbox struct {
	base, dst string
}

func newSandbox(t testing.TB) sandbox {
	base := t.TempDir()
	return sandbox{base: base, dst: filepath.Join(base, "root")}
}

// outside makes a directory beside dst holding the file keep, which no
// layer may reach, and returns its path.
func (s sandbox) outside(t testing.TB) string {
	t.Helper()
	outside := filepath.Join(s.base, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	return outside
}

// onlyRoot fails unless the sandbox holds dst and the names in also.
func (s sandbox) onlyRoot(t testing.TB, also ...string) {
	t.Helper()
	ents, err := os.ReadDir(s.base)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	want := append([]string{"root"}, also...)
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sandbox %s holds %v, want only %v: Flatten wrote outside dst", s.base, got, want)
	}
}

// compareTree compares got with want entry by entry.
func compareTree(t *testing.T, got *tree.Tree, want []tree.Entry) {
	t.Helper()
	seen := map[string]bool{}
	for i := range want {
		w := &want[i]
		seen[w.Path] = true
		g, ok := got.Get(w.Path)
		if !ok {
			t.Errorf("missing %s", w.Path)
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("entry %s:\n got %+v\nwant %+v", w.Path, *g, *w)
		}
	}
	for _, g := range got.Entries() {
		if !seen[g.Path] {
			t.Errorf("unexpected entry %+v", *g)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
