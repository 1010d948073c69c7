package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

func wantErr(t *testing.T, err error, kind error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %q is not a *flatten.Error", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not say %q", err, p)
		}
	}
}

func TestHostileLayers(t *testing.T) {
	type hostile struct {
		name   string
		layers func(sb sandbox) [][]te
		kind   error
		msg    []string
		// absent are host paths that must not exist afterwards.
		absent func(sb sandbox) []string
	}
	somewhere := func(sb sandbox) string { return filepath.Join(sb.base, "somewhere") }
	cases := []hostile{
		{"dotdot", func(sandbox) [][]te { return [][]te{{fileE("../evil", "x", 0o644)}} },
			ErrUnsafe, []string{`entry "../evil": path climbs out of the root`},
			func(sb sandbox) []string { return []string{filepath.Join(sb.base, "evil")} }},
		{"dotdot-inside", func(sandbox) [][]te { return [][]te{{dirE("a/", 0o755), fileE("a/../../evil", "x", 0o644)}} },
			ErrUnsafe, []string{`entry "a/../../evil": path climbs out of the root`},
			func(sb sandbox) []string { return []string{filepath.Join(sb.base, "evil")} }},
		{"dotdot-dir", func(sandbox) [][]te { return [][]te{{dirE("../evil/", 0o755)}} },
			ErrUnsafe, []string{"climbs out of the root"},
			func(sb sandbox) []string { return []string{filepath.Join(sb.base, "evil")} }},
		{"absolute", func(sandbox) [][]te { return [][]te{{fileE("/etc/slipway-flatten-test", "x", 0o644)}} },
			ErrUnsafe, []string{`entry "/etc/slipway-flatten-test": absolute path`},
			func(sandbox) []string { return []string{"/etc/slipway-flatten-test"} }},
		{"xattr-name-with-a-debugfs-command", func(sandbox) [][]te {
			return [][]te{{fileE("victim", "x", 0o644).xattr("user.a\ndump \"/payload\" /host/path\nx", "v")}}
		}, ErrUnsafe, []string{`entry "victim"`, `holds the byte 0x0a`}, nil},
		{"xattr-system-namespace", func(sandbox) [][]te {
			return [][]te{{fileE("acl", "x", 0o644).xattr("system.posix_acl_access", "v")}}
		}, ErrUnsafe, []string{`entry "acl"`, `xattr "system.posix_acl_access" is not in the user., trusted., security. namespaces`}, nil},
		{"xattr-empty-name", func(sandbox) [][]te {
			return [][]te{{fileE("e", "x", 0o644).xattr("", "v")}}
		}, ErrUnsafe, []string{`entry "e"`}, nil},
		{"name-with-a-newline", func(sandbox) [][]te { return [][]te{{fileE("a\nset_inode_field / uid 0", "x", 0o644)}} },
			ErrUnsafe, []string{`control character 0x0a`}, nil},
		{"symlink-target-with-a-carriage-return", func(sandbox) [][]te { return [][]te{{symE("l", "x\rdump /etc/shadow /tmp/x")}} },
			ErrUnsafe, []string{`entry "l"`, `control character 0x0d`}, nil},
		{"symlink-climbs", func(sandbox) [][]te { return [][]te{{symE("up", "../..")}} },
			ErrUnsafe, []string{`entry "up": symlink target "../.." climbs out of the root`}, nil},
		{"symlink-climbs-nested", func(sandbox) [][]te {
			return [][]te{{symE("a/b/c", "../../../etc/passwd")}}
		}, ErrUnsafe, []string{"climbs out of the root"}, nil},
		{"file-through-symlink", func(sb sandbox) [][]te {
			return [][]te{{symE("evil", somewhere(sb)), fileE("evil/x", "pwned", 0o644)}}
		}, ErrUnsafe, []string{`entry "evil/x": evil is a symlink`},
			func(sb sandbox) []string { return []string{somewhere(sb), filepath.Join(somewhere(sb), "x")} }},
		{"file-through-symlink-next-layer", func(sb sandbox) [][]te {
			return [][]te{{symE("evil", somewhere(sb))}, {fileE("evil/x", "pwned", 0o644)}}
		}, ErrUnsafe, []string{`layer 2 (sha256:`, `entry "evil/x": evil is a symlink`},
			func(sb sandbox) []string { return []string{somewhere(sb)} }},
		{"dir-through-symlink", func(sb sandbox) [][]te {
			return [][]te{{symE("evil", somewhere(sb)), dirE("evil/sub/", 0o755)}}
		}, ErrUnsafe, []string{"evil is a symlink"},
			func(sb sandbox) []string { return []string{somewhere(sb)} }},
		{"through-symlink-inside-root", func(sandbox) [][]te {
			return [][]te{{dirE("usr/lib/", 0o755), symE("lib", "usr/lib"), fileE("lib/x", "x", 0o644)}}
		}, ErrUnsafe, []string{"lib is a symlink"}, nil},
		{"whiteout-through-symlink", func(sb sandbox) [][]te {
			return [][]te{{symE("evil", somewhere(sb))}, {whE("evil/.wh.x")}}
		}, ErrUnsafe, []string{"evil is a symlink"}, nil},
		{"hardlink-climbs", func(sandbox) [][]te { return [][]te{{linkE("pw", "../../etc/passwd")}} },
			ErrUnsafe, []string{`entry "pw": hard link target "../../etc/passwd"`, "climbs out of the root"}, nil},
		{"hardlink-absolute", func(sandbox) [][]te { return [][]te{{linkE("pw", "/etc/passwd")}} },
			ErrUnsafe, []string{`hard link target "/etc/passwd": absolute path`}, nil},
		{"hardlink-missing", func(sandbox) [][]te { return [][]te{{linkE("x", "nope")}} },
			ErrUnsafe, []string{`hard link target "nope" does not exist`}, nil},
		{"hardlink-not-yet", func(sandbox) [][]te { return [][]te{{linkE("x", "later"), fileE("later", "l", 0o644)}} },
			ErrUnsafe, []string{`hard link target "later" does not exist (missing or not yet extracted)`}, nil},
		{"hardlink-dir", func(sandbox) [][]te { return [][]te{{dirE("d/", 0o755), linkE("x", "d")}} },
			ErrUnsafe, []string{`hard link target "d" is a directory`}, nil},
		{"hardlink-through-symlink", func(sandbox) [][]te { return [][]te{{symE("e", "/etc"), linkE("pw", "e/passwd")}} },
			ErrUnsafe, []string{`hard link target "e/passwd": e is a symlink`}, nil},
		{"unknown-type", func(sandbox) [][]te { return [][]te{{hdr("x", '7', 0o644)}} },
			ErrUnsupported, []string{`entry "x": unsupported entry type '7'`}, nil},
		{"empty-whiteout", func(sandbox) [][]te { return [][]te{{whE("d/.wh.")}} },
			ErrInvalid, []string{`whiteout ".wh." names nothing`}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sb := newSandbox(t)
			var layers []Layer
			for _, l := range c.layers(sb) {
				layers = append(layers, layerOf(t, l...))
			}
			tr, err := Flatten(context.Background(), layers, sb.dst, Policy{})
			if tr != nil {
				t.Error("a tree came back with the error")
			}
			wantErr(t, err, c.kind, c.msg...)
			sb.onlyRoot(t)
			if c.absent != nil {
				for _, p := range c.absent(sb) {
					if _, err := os.Lstat(p); !os.IsNotExist(err) {
						t.Errorf("%s exists: Flatten wrote outside dst", p)
					}
				}
			}
		})
	}
}

func TestErrorNamesLayerAndEntry(t *testing.T) {
	l1 := layerOf(t, fileE("ok", "x", 0o644))
	l2 := layerOf(t, fileE("../etc/passwd", "x", 0o644))
	_, err := Flatten(context.Background(), []Layer{l1, l2}, newSandbox(t).dst, Policy{})
	want := "layer 2 (" + l2.Digest() + `): entry "../etc/passwd": path climbs out of the root`
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestTooManyEntries(t *testing.T) {
	var ents []te
	for range 1001 {
		ents = append(ents, whE(".wh.nothing"))
	}
	l := layerOf(t, ents...)
	_, err := Flatten(context.Background(), []Layer{l}, newSandbox(t).dst, Policy{MaxEntries: 1000})
	wantErr(t, err, ErrLimit, "layer 1 ("+l.Digest()+"): more than 1,000 entries")

	// The cap is across layers.
	half := layerOf(t, ents[:600]...)
	_, err = Flatten(context.Background(), []Layer{half, half}, newSandbox(t).dst, Policy{MaxEntries: 1000})
	wantErr(t, err, ErrLimit, "layer 2 (", "more than 1,000 entries")
}

// gzLayer is a go-containerregistry layer over a gzipped stream, made
// without decompressing it (tarball.LayerFromOpener would, for its diff ID).
type gzLayer struct{ gz []byte }

func (l gzLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.gz))
	return h, err
}
func (l gzLayer) Compressed() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l.gz)), nil }
func (l gzLayer) Size() (int64, error)               { return int64(len(l.gz)), nil }
func (l gzLayer) MediaType() (types.MediaType, error) {
	return types.DockerLayer, nil
}

// counted counts the decompressed bytes Flatten pulls from a layer.
type counted struct {
	Layer
	n int64
}

func (c *counted) Uncompressed() (io.ReadCloser, error) {
	rc, err := c.Layer.Uncompressed()
	return countingRC{rc, &c.n}, err
}

type countingRC struct {
	io.ReadCloser
	n *int64
}

func (c countingRC) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	*c.n += int64(n)
	return n, err
}

// bomb gzips a tar of files of zeros: sizes MiB each.
func bomb(t *testing.T, files int, size int64) []byte {
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	zeros := make([]byte, 1<<20)
	for i := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "zero" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Typeflag: tar.TypeReg, Size: size, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		for left := size; left > 0; left -= int64(len(zeros)) {
			if _, err := tw.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestGzipBomb(t *testing.T) {
	for name, gz := range map[string][]byte{
		"one-huge-file":   bomb(t, 1, 256<<20),
		"many-mid-files":  bomb(t, 96, 1<<20),
		"file-then-limit": bomb(t, 2, 3<<20),
	} {
		t.Run(name, func(t *testing.T) {
			const limit = 4 << 20
			if len(gz) > 1<<20 {
				t.Fatalf("bomb is %d bytes compressed: not a bomb", len(gz))
			}
			l, err := partial.CompressedToLayer(gzLayer{gz})
			if err != nil {
				t.Fatal(err)
			}
			c := &counted{Layer: FromV1(l)}
			sb := newSandbox(t)
			_, err = Flatten(context.Background(), []Layer{c}, sb.dst, Policy{MaxBytes: limit})
			wantErr(t, err, ErrLimit, "layer 1 (sha256:", "decompressed size exceeds the limit of 4 MiB")
			if c.n > limit+1 {
				t.Fatalf("read %d decompressed bytes with a limit of %d", c.n, limit)
			}
			sb.onlyRoot(t)
		})
	}
}

// TestSparseBomb: a sparse file's content is counted as written, not as
// streamed, so a tiny stream cannot fill the disk.
func TestSparseBomb(t *testing.T) {
	// archive/tar's writer drops GNU sparse records, so write the blocks:
	// a PAX header making "s" a 1 TiB sparse file with no data at all.
	pax := paxRecord("GNU.sparse.major", "0") + paxRecord("GNU.sparse.minor", "1") +
		paxRecord("GNU.sparse.size", "1099511627776") + paxRecord("GNU.sparse.numblocks", "1") +
		paxRecord("GNU.sparse.map", "0,0")
	var b bytes.Buffer
	b.Write(ustarBlock("PaxHeaders/s", 'x', len(pax)))
	b.Write(padBlock([]byte(pax)))
	b.Write(ustarBlock("s", '0', 0))
	b.Write(make([]byte, 1024))

	tr := tar.NewReader(bytes.NewReader(b.Bytes()))
	if h, err := tr.Next(); err != nil || h.Size != 1<<40 {
		t.Fatalf("the crafted sparse header reads as %+v, %v", h, err)
	}
	_, err := Flatten(context.Background(), []Layer{bytesLayer(b.Bytes())}, newSandbox(t).dst, Policy{MaxBytes: 1 << 20})
	wantErr(t, err, ErrLimit, `entry "s": decompressed size exceeds the limit of 1 MiB`)
}

func paxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	n := len(rec) + 1
	for len(strconv.Itoa(n))+len(rec) != n {
		n++
	}
	return strconv.Itoa(n) + rec
}

// ustarBlock is a 512-byte ustar header.
func ustarBlock(name string, typ byte, size int) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "00000000000\x00")
	b[156] = typ
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func padBlock(b []byte) []byte {
	return append(b, make([]byte, (512-len(b)%512)%512)...)
}
