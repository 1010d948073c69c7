package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/qcow2"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/pkg/worker/workertest"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder/fsimage"
	"github.com/slipway/slipway/services/builder/guestinit"
	"github.com/slipway/slipway/services/builder/tree"
)

// s3 is one MinIO shared by the package's tests; initBinary is the guest
// init, built once from this repository.
var (
	s3         testenv.S3
	initBinary string
)

func TestMain(m *testing.M) {
	guestInit := testenv.Binary{Pkg: "./services/builder/cmd/slipway-init", Static: true}
	os.Exit(guestInit.Run(&initBinary, func() int { return testenv.RunWithMinIO(m, "builder", &s3) }))
}

// harness is a running builder on its own NATS server, a loopback
// registry, and a client bus that sends commands and watches events.
type harness struct {
	t       *testing.T
	ctx     context.Context
	cli     *bus.Bus
	store   *blob.Store
	events  <-chan *nats.Msg
	reg     string // host:port of the registry
	tempDir string
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// loopback opens the tests' registry, as
// SLIPWAY_FETCH_ALLOW=127.0.0.0/8,::1/128 would.
var loopback = netguard.MustParse("127.0.0.0/8,::1/128")

func newHarness(t *testing.T, mutate ...func(*Config)) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	env := testenv.NewService(t, ctx, s3, Name, testenv.Uploads, testenv.Images)
	events := testenv.Subscribe(t, env.Client.Conn(), "slipway.evt.builder.>")
	srv := httptest.NewServer(testenv.OCIHandler())
	t.Cleanup(srv.Close)

	h := &harness{t: t, ctx: ctx, cli: env.Client, store: env.Store, events: events,
		reg: strings.TrimPrefix(srv.URL, "http://"), tempDir: t.TempDir()}
	cfg := Config{Config: worker.Config{TempDir: h.tempDir, ProgressInterval: 10 * time.Millisecond, Logger: quiet()},
		GuestInit: initBinary, Registry: oci.Options{Guard: loopback}}
	for _, f := range mutate {
		f(&cfg)
	}
	testenv.LeftEmpty(t, h.tempDir)
	svc := New(env.Bus, env.Store, cfg)
	t.Cleanup(workertest.Start(t, svc.Run, svc.Ready()))
	return h
}

// pushBusybox pushes busyboxFiles as test/busybox and returns its pinned
// reference.
func (h *harness) pushBusybox() string {
	h.t.Helper()
	return h.push("test/busybox", busyboxFiles(h.t), busyboxConfig)
}

// buildContainer builds image id from the container image ref, with cmd's
// other fields: see build.
func (h *harness) buildContainer(id int64, ref string, cmd schemas.BuilderBuild, v any) (event string, progress []schemas.Progress) {
	h.t.Helper()
	cmd.ImageID, cmd.Reference, cmd.Kind = id, ref, schemas.ContentKindContainer
	return h.build(cmd, v)
}

// file is one entry of a test layer.
type file struct {
	name, link string
	typ        byte
	mode       int64
	data       []byte
}

// push builds an image of one layer holding files, with config c, pushes
// it to the registry as repo:tag and returns its pinned reference.
func (h *harness) push(repo string, files []file, c v1.Config) string {
	h.t.Helper()
	return push(h.t, h.reg, repo, files, c)
}

// push builds an image of one layer holding files, with config c, pushes
// it to the registry at reg as repo:tag and returns its pinned reference.
func push(t *testing.T, reg, repo string, files []file, c v1.Config) string {
	t.Helper()
	entries := make([]testenv.TarEntry, len(files))
	for i, f := range files {
		entries[i] = testenv.TarEntry{Header: tar.Header{Name: f.name, Typeflag: f.typ, Mode: f.mode, Linkname: f.link,
			Size: int64(len(f.data)), ModTime: time.Unix(1700000000, 0)}, Body: f.data}
	}
	img, err := mutate.AppendLayers(empty.Image, testenv.TarLayer(t, entries...))
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.Config(img, c); err != nil {
		t.Fatal(err)
	}
	return reg + "/" + repo + "@" + testenv.Push(t, reg+"/"+repo+":1", img).String()
}

// build sends a build command and returns the final event (built or
// failed) with the progress events seen before it.
func (h *harness) build(cmd schemas.BuilderBuild, v any) (event string, progress []schemas.Progress) {
	h.t.Helper()
	testenv.Command(h.t, h.ctx, h.cli, Name, "build", cmd, bus.WithCorrelation(testenv.Saga))
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case m := <-h.events:
			kind := strings.Split(m.Subject, ".")[3]
			if err := schemas.Validate(schemas.KindEvent, Name, kind, m.Data); err != nil {
				h.t.Fatalf("invalid %s event: %v", kind, err)
			}
			if m.Subject != fmt.Sprintf("slipway.evt.builder.%s.%d", kind, cmd.ImageID) {
				h.t.Fatalf("event %s for another image", m.Subject)
			}
			if kind == "progress" {
				var p schemas.Progress
				mustJSON(h.t, m.Data, &p)
				progress = append(progress, p)
				continue
			}
			mustJSON(h.t, m.Data, v)
			return kind, progress
		case <-timeout:
			h.t.Fatalf("no event for image %d", cmd.ImageID)
		}
	}
}

func mustJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

// download fetches an object to a local file.
func (h *harness) download(url string) string {
	h.t.Helper()
	return testenv.Download(h.t, h.ctx, h.store, url, filepath.Join(h.t.TempDir(), "blob"))
}

func (h *harness) exists(url string) bool {
	h.t.Helper()
	bucket, key, _ := blob.ParseURL(url)
	_, err := h.store.Stat(h.ctx, bucket, key)
	if err != nil && !blob.IsNotFound(err) {
		h.t.Fatal(err)
	}
	return err == nil
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// busyboxFiles is a minimal image: busybox-static, a shell link to it,
// and an os-release reached through a symlink, as Debian lays it out.
func busyboxFiles(t *testing.T) []file {
	return []file{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, data: readFile(t, "/bin/busybox")},
		{name: "bin/sh", typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/os-release", typ: tar.TypeSymlink, mode: 0o777, link: "../usr/lib/os-release"},
		{name: "usr/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/lib/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/lib/os-release", typ: tar.TypeReg, mode: 0o644, data: []byte("NAME=\"Slipway Test\"\nID=\"slipway-test\"\n")},
	}
}

var busyboxConfig = v1.Config{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hello"},
	Env: []string{"PATH=/bin", "GREETING=hi"}, WorkingDir: "/tmp", User: "1000:1000"}

// Both ext4 writers make the same filesystem of the image: owners, modes,
// links, contents and the injected guest init.
func TestBuildBusybox(t *testing.T) {
	for i, writer := range []string{Ext4WriterNative, Ext4WriterMkfs} {
		t.Run(writer, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Ext4Writer = writer })
			testBuildBusybox(t, h, int64(70+i))
		})
	}
}

func testBuildBusybox(t *testing.T, h *harness, id int64) {
	ref := h.pushBusybox()
	dest := testenv.Dest(id, "disk.raw")
	var built schemas.BuilderBuilt
	kind, progress := h.buildContainer(id, ref, schemas.BuilderBuild{SizeMiB: 64, Filesystem: schemas.FilesystemExt4, Dest: dest}, &built)
	if kind != "built" {
		t.Fatalf("got %s: %+v", kind, built)
	}
	_, digest, _ := strings.Cut(ref, "@")
	if built.Dest != dest || built.Format != schemas.DiskFormatRaw || built.VirtualSize != 64<<20 ||
		built.Size != 64<<20 || built.Distro != "slipway-test" || built.Digest != digest {
		t.Fatalf("built = %+v", built)
	}
	if len(progress) == 0 {
		t.Error("no progress event")
	}

	raw := h.download(dest)
	if got := sha(readFile(t, raw)); got != built.SHA256 {
		t.Fatalf("stored blob sha256 %s, event says %s", got, built.SHA256)
	}
	testenv.AssertS3Checksum(t, h.ctx, h.store, dest, built.S3Checksum)
	testenv.Exec(t, "e2fsck", "-fn", raw)
	tr, err := fsimage.ReadExt(h.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	bb := mustEntry(t, tr, "bin/busybox")
	if bb.Type != tree.Regular || bb.Mode != 0o755 || bb.UID != 0 || bb.Size != int64(len(readFile(t, "/bin/busybox"))) {
		t.Fatalf("bin/busybox = %+v", bb)
	}
	if sh := mustEntry(t, tr, "bin/sh"); sh.Type != tree.Symlink || sh.Link != "busybox" {
		t.Fatalf("bin/sh = %+v", sh)
	}
	checkHash(t, h.ctx, raw, "bin/busybox", sha(readFile(t, "/bin/busybox")))

	init := mustEntry(t, tr, ".slipway/init")
	if init.Type != tree.Regular || init.Mode != 0o755 || init.UID != 0 || init.GID != 0 {
		t.Fatalf(".slipway/init = %+v", init)
	}
	checkHash(t, h.ctx, raw, ".slipway/init", sha(readFile(t, initBinary)))
	conf, _ := json.MarshalIndent(guestinit.Config{Entrypoint: busyboxConfig.Entrypoint, Cmd: busyboxConfig.Cmd,
		Env: busyboxConfig.Env, WorkingDir: "/tmp", User: "1000:1000"}, "", "  ")
	if c := mustEntry(t, tr, ".slipway/config.json"); c.Mode != 0o644 || c.UID != 0 {
		t.Fatalf(".slipway/config.json = %+v", c)
	}
	checkHash(t, h.ctx, raw, ".slipway/config.json", sha(conf))
}

// A qcow2 build is the final blob: qemu-img finds it sound and reads it as
// qcow2 of the filesystem's size, zstd-compressed when asked (qemu-img's
// conversion) and else written by pkg/qcow2 while uploaded, and its raw
// conversion is the filesystem with busybox in it. Compression with raw
// output is refused.
func TestBuildQcow2(t *testing.T) {
	h := newHarness(t)
	ref := h.pushBusybox()
	for i, compression := range []schemas.Compression{schemas.CompressionZstd, ""} {
		id := int64(9 + 2*i)
		dest := testenv.Dest(id, "disk.qcow2")
		var built schemas.BuilderBuilt
		kind, progress := h.buildContainer(id, ref, schemas.BuilderBuild{SizeMiB: 64, Format: schemas.DiskFormatQcow2, Compression: compression, Dest: dest}, &built)
		if kind != "built" {
			t.Fatalf("%q: got %s: %+v", compression, kind, built)
		}
		if built.Dest != dest || built.Format != schemas.DiskFormatQcow2 || built.VirtualSize != 64<<20 ||
			built.Size <= 0 || built.Size >= 64<<20 || built.Distro != "slipway-test" {
			t.Fatalf("%q: built = %+v", compression, built)
		}
		if last := progress[len(progress)-1]; last.Phase != string(schemas.BuilderPhaseUpload) || last.BytesTotal != built.Size {
			t.Errorf("%q: last progress %+v, want phase upload of %d bytes", compression, last, built.Size)
		}
		qcow := h.download(dest)
		if got := sha(readFile(t, qcow)); got != built.SHA256 || int64(len(readFile(t, qcow))) != built.Size {
			t.Fatalf("%q: stored blob sha256 %s, event says %s", compression, got, built.SHA256)
		}
		testenv.AssertS3Checksum(t, h.ctx, h.store, dest, built.S3Checksum)
		checkQcow2(t, qcow, 64<<20, compression)
		// pkg/qcow2 puts the L1 table right after the header; qemu-img
		// puts the refcount table there.
		if l1 := binary.BigEndian.Uint64(readFile(t, qcow)[40:]); (l1 == qcow2.ClusterSize) != (compression == "") {
			t.Errorf("%q: L1 table at %d: not the writer expected", compression, l1)
		}
		raw, tr := qcowTree(t, h.ctx, qcow)
		if bb := mustEntry(t, tr, "bin/busybox"); bb.Type != tree.Regular || bb.Mode != 0o755 {
			t.Fatalf("%q: bin/busybox = %+v", compression, bb)
		}
		checkHash(t, h.ctx, raw, "bin/busybox", sha(readFile(t, "/bin/busybox")))
	}

	var f schemas.Failure
	if kind, _ := h.buildContainer(10, ref, schemas.BuilderBuild{Compression: schemas.CompressionZlib, Dest: testenv.Dest(10, "disk.raw")}, &f); kind != "failed" ||
		f.Retryable || !strings.Contains(f.Error, "compression zlib applies to qcow2 only") {
		t.Fatalf("compressed raw: %s %+v", kind, f)
	}
}

// checkQcow2 has qemu-img check the image and read its format, virtual
// size and whether its clusters are compressed (the header says the
// compression type of any image, compressed or not: the clusters tell).
func checkQcow2(t *testing.T, qcow string, virtualSize int64, compression schemas.Compression) {
	t.Helper()
	testenv.Exec(t, "qemu-img", "check", "-f", "qcow2", qcow)
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
		Specific    struct {
			Data struct {
				Compression string `json:"compression-type"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	mustJSON(t, []byte(testenv.Exec(t, "qemu-img", "info", "--output=json", "-f", "qcow2", qcow)), &info)
	if info.Format != "qcow2" || info.VirtualSize != virtualSize || (compression != "" && info.Specific.Data.Compression != string(compression)) {
		t.Fatalf("qemu-img info = %+v", info)
	}
	var check struct {
		Compressed int64 `json:"compressed-clusters"`
	}
	mustJSON(t, []byte(testenv.Exec(t, "qemu-img", "check", "--output=json", "-f", "qcow2", qcow)), &check)
	if (check.Compressed > 0) != (compression != "") {
		t.Fatalf("%d compressed clusters with compression %q", check.Compressed, compression)
	}
}

// qcowTree converts the qcow2 image at qcow to raw, checks its ext4
// filesystem with e2fsck and returns the raw image and its tree.
func qcowTree(t *testing.T, ctx context.Context, qcow string) (string, *tree.Tree) {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "disk.raw")
	testenv.Exec(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow, raw)
	testenv.Exec(t, "e2fsck", "-fn", raw)
	tr, err := fsimage.ReadExt(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, tr
}

func mustEntry(t *testing.T, tr *tree.Tree, p string) *tree.Entry {
	t.Helper()
	e, ok := tr.Get(p)
	if !ok {
		t.Fatalf("%s is not in the image", p)
	}
	return e
}

func checkHash(t *testing.T, ctx context.Context, image, p, want string) {
	t.Helper()
	got, err := fsimage.ContentHash(ctx, image, "ext4", p)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("%s has sha256 %s, want %s", p, got, want)
	}
}

// An image without os-release is built, recorded as unknown; the
// command's distro wins over os-release; xfs works too.
func TestBuildDistroAndXFS(t *testing.T) {
	h := newHarness(t)
	scratch := h.push("test/scratch", []file{
		{name: "hello", typ: tar.TypeReg, mode: 0o755, data: readFile(t, "/bin/busybox")},
	}, v1.Config{Entrypoint: []string{"/hello"}})
	var built schemas.BuilderBuilt
	if kind, _ := h.buildContainer(1, scratch, schemas.BuilderBuild{Dest: testenv.Dest(1, "disk.raw")}, &built); kind != "built" || built.Distro != UnknownDistro {
		t.Fatalf("scratch image: %s %+v", kind, built)
	}
	ref := h.pushBusybox()
	dest := testenv.Dest(2, "disk.raw")
	if kind, _ := h.buildContainer(2, ref, schemas.BuilderBuild{Filesystem: schemas.FilesystemXFS, Distro: "alpine", Dest: dest}, &built); kind != "built" || built.Distro != "alpine" {
		t.Fatalf("xfs image: %s %+v", kind, built)
	}
	raw := h.download(dest)
	testenv.Exec(t, "xfs_repair", "-n", raw)
	tr, err := fsimage.ReadXFS(h.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if e := mustEntry(t, tr, ".slipway/init"); e.Mode != 0o755 || e.UID != 0 {
		t.Fatalf(".slipway/init = %+v", e)
	}
	got, err := fsimage.ContentHash(h.ctx, raw, "xfs", "bin/busybox")
	if err != nil || got != sha(readFile(t, "/bin/busybox")) {
		t.Fatalf("bin/busybox hash %s, %v", got, err)
	}
}

func TestBuildTooSmall(t *testing.T) {
	h := newHarness(t)
	ref := h.pushBusybox()
	dest := testenv.Dest(3, "disk.raw")
	var f schemas.Failure
	kind, _ := h.buildContainer(3, ref, schemas.BuilderBuild{SizeMiB: 1, Dest: dest}, &f)
	h.checkTooSmall(kind, f, dest)
}

// checkTooSmall checks a build of size_mib 1 ended for good in mkfs,
// saying how much the content needs, and left nothing at dest.
func (h *harness) checkTooSmall(kind string, f schemas.Failure, dest string) {
	h.t.Helper()
	if kind != "failed" || f.Phase != string(schemas.BuilderPhaseMkfs) || f.Code != schemas.CodeTooLarge || f.Retryable ||
		!strings.Contains(f.Error, "size=1 MiB is too small") || !strings.Contains(f.Error, "needs at least") {
		h.t.Fatalf("%s: %+v", kind, f)
	}
	if h.exists(dest) {
		h.t.Error("a failed build left its dest")
	}
}

func TestBuildUnknownDigest(t *testing.T) {
	h := newHarness(t)
	h.pushBusybox()
	ref := h.reg + "/test/busybox@sha256:" + strings.Repeat("ab", 32)
	var f schemas.Failure
	kind, _ := h.buildContainer(4, ref, schemas.BuilderBuild{Dest: testenv.Dest(4, "disk.raw")}, &f)
	if kind != "failed" || f.Phase != string(schemas.BuilderPhasePull) || f.Retryable || !strings.Contains(f.Error, "MANIFEST_UNKNOWN") ||
		f.Code != schemas.CodeSourceNotFound {
		t.Fatalf("%s: %+v", kind, f)
	}
}

// TestBuildFromUnresolvableRegistry: a registry whose name does not resolve
// fails the build at once, for good, with host-not-found: no retry.
func TestBuildFromUnresolvableRegistry(t *testing.T) {
	h := newHarness(t)
	ref := "nonexistent.invalid/test/busybox@sha256:" + strings.Repeat("ab", 32)
	var f schemas.Failure
	start := time.Now()
	kind, _ := h.build(schemas.BuilderBuild{ImageID: 12, Reference: ref, Kind: schemas.ContentKindContainer,
		Dest: testenv.Dest(12, "disk.raw")}, &f)
	if kind != "failed" || f.Code != schemas.CodeHostNotFound || f.Retryable || f.NextAttemptAt != "" ||
		f.Phase != string(schemas.BuilderPhasePull) {
		t.Fatalf("%s: %+v: want a final pull failure with host-not-found", kind, f)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the failure took %s: something retried", d)
	}
}

// TestBuildFromRefusedRegistry: without SLIPWAY_FETCH_ALLOW a registry on
// loopback is refused; the build fails for good in its pull phase, naming
// the address and the setting.
func TestBuildFromRefusedRegistry(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Registry.Guard = nil })
	ref := h.pushBusybox()
	var f schemas.Failure
	kind, _ := h.buildContainer(11, ref, schemas.BuilderBuild{Dest: testenv.Dest(11, "disk.raw")}, &f)
	want := "registry " + h.reg + ": refusing to connect to " + h.reg + " (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it"
	if kind != "failed" || f.Phase != string(schemas.BuilderPhasePull) || f.Retryable || !strings.Contains(f.Error, want) ||
		f.Code != schemas.CodeAccessDenied {
		t.Fatalf("%s: %+v\nwant a final pull failure containing %q", kind, f, want)
	}
	if h.exists(testenv.Dest(11, "disk.raw")) {
		t.Error("a failed build left its dest")
	}
}

// TestBuildTamperedLayer: a layer blob that is not what the manifest
// says fails the build in its pull phase, naming the download's failure
// (not whatever flattening its bytes would have met), and stores nothing.
func TestBuildTamperedLayer(t *testing.T) {
	for i, tc := range []struct {
		name string
		f    func([]byte) []byte
		want string
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, "digest mismatch: the registry sent sha256:"},
		{"bad gzip header", func(b []byte) []byte { b[3] |= 0xe0; return b }, "digest mismatch: the registry sent sha256:"},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, "size mismatch: the registry sent "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.MaxDeliver = 1 })
			reg := testenv.OCIRegistry(t, tamperLayers(tc.f))
			ref := push(t, reg, "test/busybox", busyboxFiles(t), busyboxConfig)
			id := int64(30 + i)
			dest := testenv.Dest(id, "disk.raw")
			var f schemas.Failure
			kind, _ := h.buildContainer(id, ref, schemas.BuilderBuild{Dest: dest}, &f)
			if kind != "failed" || f.Phase != string(schemas.BuilderPhasePull) || !strings.Contains(f.Error, tc.want) {
				t.Fatalf("%s: %+v\nwant a pull failure containing %q", kind, f, tc.want)
			}
			if h.exists(dest) {
				t.Error("a failed build left its dest")
			}
		})
	}
}

// tamperLayers rewrites with f the body of every blob GET larger than
// 64 KiB: the layers of the tests' images, not their configs.
func tamperLayers(f func([]byte) []byte) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 64<<10 {
				body = f(body)
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

// A disk carried in an image (KubeVirt containerDisk) is stored as it is.
func TestBuildCarriedDisk(t *testing.T) {
	h := newHarness(t)
	disk := bytes.Repeat([]byte("QFI\xfb disk "), 5000)
	ref := h.push("test/disk", []file{
		{name: "disk/", typ: tar.TypeDir, mode: 0o555},
		{name: "disk/debian.qcow2", typ: tar.TypeReg, mode: 0o444, data: disk},
	}, v1.Config{})
	dest := blob.URL(testenv.Uploads, blob.BuildKey(5, testenv.Saga))
	var built schemas.BuilderBuilt
	if kind, _ := h.build(schemas.BuilderBuild{ImageID: 5, Reference: ref, Kind: schemas.ContentKindDisk, Dest: dest}, &built); kind != "built" {
		t.Fatalf("%s: %+v", kind, built)
	}
	if built.Size != int64(len(disk)) || built.SHA256 != sha(disk) || built.Format != "" || built.Distro != "" {
		t.Fatalf("built = %+v", built)
	}
	testenv.AssertS3Checksum(t, h.ctx, h.store, dest, built.S3Checksum)
	if got := readFile(t, h.download(dest)); !bytes.Equal(got, disk) {
		t.Fatal("stored disk differs")
	}
}

// A command that does not match its schema fails at once, naming the
// problem.
func TestBuildInvalidCommand(t *testing.T) {
	h := newHarness(t)
	var f schemas.Failure
	if _, err := h.cli.Command(h.ctx, Name, "build", map[string]any{"image_id": 6, "reference": "nginx:latest", "kind": "container", "dest": "s3://slipway-uploads/x"}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-h.events:
		mustJSON(t, m.Data, &f)
		if m.Subject != "slipway.evt.builder.failed.6" || f.Retryable || !strings.Contains(f.Error, "/reference") ||
			f.Code != schemas.CodeInvalidCommand {
			t.Fatalf("%s: %+v", m.Subject, f)
		}
	case <-time.After(time.Minute):
		t.Fatal("no failed event")
	}
}
