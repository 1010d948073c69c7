package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/slipway/slipway/services/builder/tree"
)

// capV2 is a security.capability value (VFS_CAP_REVISION_2, cap_net_raw
// permitted and effective), as ping carries it.
const capV2 = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// imageLayers is a three-layer image exercising whiteouts, opaque
// whiteouts on both sides of the marker, replacements in both directions,
// hard links within and across layers, symlinks, setuid and setgid files,
// xattrs, devices, a FIFO and owners.
func imageLayers(t testing.TB) [][]byte {
	l1 := tarBytes(t,
		dirE("./", 0o755),
		dirE("bin/", 0o755),
		fileE("bin/busybox", "BUSYBOX", 0o755),
		linkE("bin/sh", "bin/busybox"),
		symE("bin/ls", "busybox"),
		dirE("etc/", 0o755),
		fileE("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
		fileE("etc/hostname", "base\n", 0o644),
		dirE("usr/", 0o755),
		dirE("usr/bin/", 0o755),
		fileE("usr/bin/python3", "PY", 0o755),
		symE("usr/bin/python", "/usr/bin/python3"),
		fileE("usr/bin/passwd", "PASSWD", 0o4755),
		fileE("usr/bin/ping", "PING", 0o755).xattr("security.capability", capV2),
		dirE("dev/", 0o755),
		devE("dev/null", tar.TypeChar, 0o666, 1, 3),
		devE("dev/sda", tar.TypeBlock, 0o660, 8, 0).own(0, 6),
		dirE("run/", 0o755),
		devE("run/ctl", tar.TypeFifo, 0o600, 0, 0),
		dirE("opt/old/", 0o755), // opt itself is implicit
		fileE("opt/old/a", "a", 0o644),
		fileE("opt/old/sub/b", "b", 0o644),
		dirE("var/", 0o755),
		dirE("var/lib/", 0o755),
		fileE("var/lib/x", "x", 0o644),
		fileE("var/lib/y", "y", 0o644),
		dirE("home/", 0o755),
		dirE("home/user/", 0o700).own(1000, 1000),
		fileE("home/user/.profile", "PS1=$\n", 0o644).own(1000, 1000),
		dirE("srv/", 0o755),
		dirE("srv/data/", 0o755),
		fileE("srv/data/f", "f", 0o644),
		dirE("tmp/", 0o1777),
		fileE("data", "was a file", 0o644),
	)
	l2 := tarBytes(t,
		fileE("etc/passwd", "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", 0o644),
		whE("etc/.wh.hostname"),
		whE("opt/.wh.old"),
		fileE("var/lib/keep.txt", "keep", 0o644), // before the marker
		whE("var/lib/.wh..wh..opq"),
		fileE("var/lib/after.txt", "after", 0o644), // after the marker
		fileE("srv/data", "now a file", 0o600),     // dir -> file
		dirE("data/", 0o750),                       // file -> dir
		fileE("data/inner", "inner", 0o644),
		linkE("bin/busybox2", "bin/busybox"), // across layers
		fileE("usr/bin/newgrp", "NEWGRP", 0o2755),
	)
	l3 := tarBytes(t,
		whE("bin/.wh.busybox"), // the first name of a hard-linked file goes
		fileE("etc/hostname", "vm\n", 0o644),
		fileE("etc/a", "shared", 0o644),
		linkE("etc/b", "etc/a").mode(0o644), // within a layer
	)
	return [][]byte{l1, l2, l3}
}

func want(p string, typ tree.Type, mode uint32, size int64) tree.Entry {
	return tree.Entry{Path: p, Type: typ, Mode: mode, Size: size, ModTime: mtime}
}

func imageTree() []tree.Entry {
	e := func(p string, typ tree.Type, mode uint32, size int64, opts ...func(*tree.Entry)) tree.Entry {
		x := want(p, typ, mode, size)
		for _, o := range opts {
			o(&x)
		}
		return x
	}
	link := func(l string) func(*tree.Entry) { return func(x *tree.Entry) { x.Link = l } }
	own := func(u, g uint32) func(*tree.Entry) { return func(x *tree.Entry) { x.UID, x.GID = u, g } }
	dev := func(ma, mi uint32) func(*tree.Entry) { return func(x *tree.Entry) { x.Major, x.Minor = ma, mi } }
	implicit := func(x *tree.Entry) { x.ModTime = 0 }
	passwd := "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
	return []tree.Entry{
		e(".", tree.Dir, 0o755, 0),
		e("bin", tree.Dir, 0o755, 0),
		e("bin/busybox2", tree.Regular, 0o755, 7),
		e("bin/ls", tree.Symlink, 0o777, 0, link("busybox")),
		e("bin/sh", tree.Hardlink, 0o755, 7, link("bin/busybox2")),
		e("data", tree.Dir, 0o750, 0),
		e("data/inner", tree.Regular, 0o644, 5),
		e("dev", tree.Dir, 0o755, 0),
		e("dev/null", tree.CharDevice, 0o666, 0, dev(1, 3)),
		e("dev/sda", tree.BlockDevice, 0o660, 0, dev(8, 0), own(0, 6)),
		e("etc", tree.Dir, 0o755, 0),
		e("etc/a", tree.Regular, 0o644, 6),
		e("etc/b", tree.Hardlink, 0o644, 6, link("etc/a")),
		e("etc/hostname", tree.Regular, 0o644, 3),
		e("etc/passwd", tree.Regular, 0o644, int64(len(passwd))),
		e("home", tree.Dir, 0o755, 0),
		e("home/user", tree.Dir, 0o700, 0, own(1000, 1000)),
		e("home/user/.profile", tree.Regular, 0o644, 6, own(1000, 1000)),
		e("opt", tree.Dir, 0o755, 0, implicit),
		e("run", tree.Dir, 0o755, 0),
		e("run/ctl", tree.FIFO, 0o600, 0),
		e("srv", tree.Dir, 0o755, 0),
		e("srv/data", tree.Regular, 0o600, 10),
		e("tmp", tree.Dir, 0o1777, 0),
		e("usr", tree.Dir, 0o755, 0),
		e("usr/bin", tree.Dir, 0o755, 0),
		e("usr/bin/newgrp", tree.Regular, 0o2755, 6),
		e("usr/bin/passwd", tree.Regular, 0o4755, 6),
		e("usr/bin/ping", tree.Regular, 0o755, 4, func(x *tree.Entry) {
			x.Xattrs = map[string]string{"security.capability": capV2}
		}),
		e("usr/bin/python", tree.Symlink, 0o777, 0, link("/usr/bin/python3")),
		e("usr/bin/python3", tree.Regular, 0o755, 2),
		e("var", tree.Dir, 0o755, 0),
		e("var/lib", tree.Dir, 0o755, 0),
		e("var/lib/after.txt", tree.Regular, 0o644, 5),
		e("var/lib/keep.txt", tree.Regular, 0o644, 4),
	}
}

func gzipped(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// v1Layer makes a real go-containerregistry layer from a gzipped stream.
func gzipV1Layer(t testing.TB, raw []byte) v1.Layer {
	gz := gzipped(t, raw)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestFlattenImage(t *testing.T) {
	raw := imageLayers(t)
	for name, mk := range map[string]func([]byte) Layer{
		"plain":   func(b []byte) Layer { return bytesLayer(b) },
		"v1-gzip": func(b []byte) Layer { return FromV1(gzipV1Layer(t, b)) },
	} {
		t.Run(name, func(t *testing.T) {
			var layers []Layer
			for _, b := range raw {
				layers = append(layers, mk(b))
			}
			sb := newSandbox(t)
			got, err := Flatten(context.Background(), layers, sb.dst, Policy{})
			if err != nil {
				t.Fatal(err)
			}
			compareTree(t, got, imageTree())
			checkImageDisk(t, sb.dst)
			diskMatchesTree(t, sb.dst, got)
			sb.onlyRoot(t)
		})
	}
}

func checkImageDisk(t *testing.T, dst string) {
	p := func(s string) string { return filepath.Join(dst, s) }
	for f, body := range map[string]string{
		"etc/passwd":        "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
		"etc/hostname":      "vm\n",
		"etc/a":             "shared",
		"srv/data":          "now a file",
		"data/inner":        "inner",
		"bin/sh":            "BUSYBOX",
		"var/lib/keep.txt":  "keep",
		"var/lib/after.txt": "after",
	} {
		if got := readFile(t, p(f)); got != body {
			t.Errorf("%s holds %q, want %q", f, got, body)
		}
	}
	for _, pair := range [][2]string{{"bin/sh", "bin/busybox2"}, {"etc/a", "etc/b"}} {
		a, err1 := os.Lstat(p(pair[0]))
		b, err2 := os.Lstat(p(pair[1]))
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			t.Errorf("%s and %s are not one hard-linked file (%v, %v)", pair[0], pair[1], err1, err2)
		}
	}
	for _, gone := range []string{"bin/busybox", "opt/old", "var/lib/x", "var/lib/y", "dev/null", "dev/sda", "run/ctl", "etc/.wh.hostname"} {
		if _, err := os.Lstat(p(gone)); !os.IsNotExist(err) {
			t.Errorf("%s exists on disk (%v)", gone, err)
		}
	}
	for l, target := range map[string]string{"bin/ls": "busybox", "usr/bin/python": "/usr/bin/python3"} {
		if got, err := os.Readlink(p(l)); err != nil || got != target {
			t.Errorf("symlink %s -> %q (%v), want %q", l, got, err, target)
		}
	}
	// On disk: owner-only permissions, never setuid; real modes are in the tree.
	for f, perm := range map[string]fs.FileMode{"usr/bin/passwd": 0o700, "etc/passwd": 0o600, "tmp": fs.ModeDir | 0o700} {
		fi, err := os.Lstat(p(f))
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); m != perm {
			t.Errorf("%s has mode %v on disk, want %v", f, m, perm)
		}
		if fi.ModTime().Unix() != mtime {
			t.Errorf("%s has mtime %v on disk, want %d", f, fi.ModTime(), mtime)
		}
	}
	err := filepath.WalkDir(dst, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".wh.") {
			t.Errorf("whiteout %s left on disk", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpaqueKeepsSameLayerBelow(t *testing.T) {
	// The marker comes last; the same layer's entries deep below the
	// directory stay, even under a directory the lower layer made.
	l1 := layerOf(t, dirE("d/", 0o755), dirE("d/sub/", 0o755), fileE("d/sub/old", "o", 0o644), fileE("d/gone", "g", 0o644))
	l2 := layerOf(t, fileE("d/sub/new", "n", 0o644), whE("d/.wh..wh..opq"))
	sb := newSandbox(t)
	got, err := Flatten(context.Background(), []Layer{l1, l2}, sb.dst, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range got.Entries() {
		paths = append(paths, e.Path)
	}
	if strings.Join(paths, " ") != ". d d/sub d/sub/new" {
		t.Fatalf("entries %v, want . d d/sub d/sub/new", paths)
	}
	if _, err := os.Lstat(filepath.Join(sb.dst, "d/sub/old")); !os.IsNotExist(err) {
		t.Fatalf("d/sub/old still on disk: %v", err)
	}
}

func TestWhiteoutOfSymlinkRemovesOnlyTheLink(t *testing.T) {
	sb := newSandbox(t)
	outside := sb.outside(t)
	l1 := layerOf(t, symE("evil", outside))
	l2 := layerOf(t, whE(".wh.evil"))
	got, err := Flatten(context.Background(), []Layer{l1, l2}, sb.dst, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Len() != 1 {
		t.Fatalf("tree holds %d entries, want the root only", got.Len())
	}
	if readFile(t, filepath.Join(outside, "keep")) != "k" {
		t.Fatal("the symlink's target was touched")
	}
	sb.onlyRoot(t, "outside")
}

func TestPolicies(t *testing.T) {
	layer := func() Layer {
		return layerOf(t,
			fileE("su", "S", 0o4755), fileE("sg", "G", 0o2711), dirE("shared/", 0o2775),
			devE("null", tar.TypeChar, 0o666, 1, 3), linkE("null2", "null"), devE("fifo", tar.TypeFifo, 0o600, 0, 0))
	}
	sb := newSandbox(t)
	got, err := Flatten(context.Background(), []Layer{layer()}, sb.dst, Policy{Setuid: StripSetuid, Devices: SkipDevices})
	if err != nil {
		t.Fatal(err)
	}
	compareTree(t, got, []tree.Entry{
		{Path: ".", Type: tree.Dir, Mode: 0o755},
		want("fifo", tree.FIFO, 0o600, 0),
		want("sg", tree.Regular, 0o711, 1),
		want("shared", tree.Dir, 0o2775, 0),
		want("su", tree.Regular, 0o755, 1),
	})

	_, err = Flatten(context.Background(), []Layer{layer()}, newSandbox(t).dst, Policy{Devices: RefuseDevices})
	wantErr(t, err, ErrUnsupported, `layer 1 (sha256:`, `entry "null": device nodes are refused`)
}

func TestHardLinkHeaderSetsSharedInode(t *testing.T) {
	// As docker and containerd chown and chmod the new name.
	l := layerOf(t, fileE("a", "x", 0o644), linkE("b", "a").own(5, 6))
	got, err := Flatten(context.Background(), []Layer{l}, newSandbox(t).dst, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := got.Get("a")
	b, _ := got.Get("b")
	if a.UID != 5 || a.GID != 6 || a.Mode != 0o755 || b.Type != tree.Hardlink || b.Link != "a" || b.UID != 5 {
		t.Fatalf("a %+v, b %+v", *a, *b)
	}
}

func TestReplacingHardLinkedFileKeepsTheOtherName(t *testing.T) {
	l1 := layerOf(t, fileE("a", "old", 0o644), linkE("b", "a"))
	l2 := layerOf(t, fileE("a", "new!", 0o644))
	sb := newSandbox(t)
	got, err := Flatten(context.Background(), []Layer{l1, l2}, sb.dst, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(sb.dst, "b")) != "old" || readFile(t, filepath.Join(sb.dst, "a")) != "new!" {
		t.Fatal("writing a over a hard link changed the other name")
	}
	b, _ := got.Get("b")
	if b.Type != tree.Regular || b.Size != 3 {
		t.Fatalf("b is %+v, want a regular file of 3 bytes", *b)
	}
}

func TestRealRandomLayer(t *testing.T) {
	l, err := random.Layer(4096, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(tr)
	rc.Close()

	sb := newSandbox(t)
	got, err := Flatten(context.Background(), []Layer{FromV1(l)}, sb.dst, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := got.Get(h.Name)
	if !ok || e.Type != tree.Regular || e.Size != 4096 || got.Len() != 2 {
		t.Fatalf("tree: %v entries, %s: %+v", got.Len(), h.Name, e)
	}
	if readFile(t, filepath.Join(sb.dst, h.Name)) != string(body) {
		t.Fatal("content differs from the layer's")
	}
	d, _ := l.Digest()
	if FromV1(l).Digest() != d.String() {
		t.Fatalf("FromV1 digest %s, want %s", FromV1(l).Digest(), d)
	}
}

// endless serves a tar header for a huge file, then zeros forever, and
// cancels after a while: Flatten must stop without reading much more.
type endless struct {
	hdr    []byte
	served int64
	cancel func()
}

func (e *endless) Read(p []byte) (int, error) {
	n := copy(p, e.hdr)
	e.hdr = e.hdr[n:]
	for i := n; i < len(p); i++ {
		p[i] = 0
	}
	e.served += int64(len(p))
	if e.served > 8<<20 && e.cancel != nil {
		e.cancel()
		e.cancel = nil
	}
	return len(p), nil
}

type readerLayer struct{ r io.Reader }

func (l readerLayer) Digest() string                       { return "sha256:endless" }
func (l readerLayer) Uncompressed() (io.ReadCloser, error) { return io.NopCloser(l.r), nil }

func TestCancellation(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 1 << 40, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &endless{hdr: b.Bytes(), cancel: cancel}
	start := time.Now()
	_, err := Flatten(ctx, []Layer{readerLayer{src}}, newSandbox(t).dst, Policy{MaxBytes: 1 << 50})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if src.served > 9<<20 {
		t.Fatalf("read %d bytes after cancelling at 8 MiB", src.served)
	}
	t.Logf("stopped after %v", time.Since(start))
}

func TestDestinationMustBeEmpty(t *testing.T) {
	sb := newSandbox(t)
	if err := os.MkdirAll(filepath.Join(sb.dst, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Flatten(context.Background(), nil, sb.dst, Policy{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err %v, want not empty", err)
	}
}

func TestFormat(t *testing.T) {
	for n, s := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1000000: "1,000,000", 1234567890: "1,234,567,890"} {
		if got := commas(n); got != s {
			t.Errorf("commas(%d) = %q, want %q", n, got, s)
		}
	}
	for n, s := range map[int64]string{DefaultMaxBytes: "64 GiB", 1 << 20: "1 MiB", 1536: "1536 bytes", 3 << 10: "3 KiB"} {
		if got := bytesText(n); got != s {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, s)
		}
	}
}

func TestHardLinkToSymlinkIsACopy(t *testing.T) {
	sb := newSandbox(t)
	l := layerOf(t, symE("s", "/etc/passwd"), linkE("h", "s"))
	got, err := Flatten(context.Background(), []Layer{l}, sb.dst, Policy{MaxBytes: math.MaxInt64})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(sb.dst, "h"))
	if err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Fatalf("h on disk: %v, %v; want a symlink", fi, err)
	}
	if target, _ := os.Readlink(filepath.Join(sb.dst, "h")); target != "/etc/passwd" {
		t.Fatalf("h -> %q", target)
	}
	for _, p := range []string{"h", "s"} {
		if e, _ := got.Get(p); e.Type != tree.Symlink || e.Link != "/etc/passwd" {
			t.Fatalf("%s is %+v", p, *e)
		}
	}
	diskMatchesTree(t, sb.dst, got)

	// From its new place, the copy's relative target must not climb out.
	l = layerOf(t, symE("a/b/s", "../x"), linkE("h", "a/b/s"))
	_, err = Flatten(context.Background(), []Layer{l}, newSandbox(t).dst, Policy{})
	wantErr(t, err, ErrUnsafe, `entry "h": symlink target "../x" climbs out of the root`)
}

// BenchmarkFlatten flattens two layers of 10,000 small files each, the
// second whiting out half the first's directories.
func BenchmarkFlatten(b *testing.B) {
	var l1, l2 []te
	for d := range 100 {
		l1 = append(l1, dirE("d"+strconv.Itoa(d)+"/", 0o755))
		for f := range 100 {
			l1 = append(l1, fileE("d"+strconv.Itoa(d)+"/f"+strconv.Itoa(f), "content", 0o644))
			l2 = append(l2, fileE("e"+strconv.Itoa(d)+"/f"+strconv.Itoa(f), "content", 0o644))
		}
		if d%2 == 0 {
			l2 = append(l2, whE(".wh.d"+strconv.Itoa(d)))
		}
	}
	layers := []Layer{layerOf(b, l1...), layerOf(b, l2...)}
	for b.Loop() {
		if _, err := Flatten(context.Background(), layers, filepath.Join(b.TempDir(), "root"), Policy{}); err != nil {
			b.Fatal(err)
		}
	}
}
