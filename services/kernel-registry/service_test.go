package kernelregistry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/catalog"
	"github.com/slipway/slipway/services/converter"
)

// s3 is one MinIO shared by the package's tests, each with its own
// buckets; initrdBin is slipway-initrd built for them.
var (
	s3        testenv.S3
	initrdBin string
)

func TestMain(m *testing.M) {
	initrd := testenv.Binary{Pkg: "./services/kernel-registry/cmd/slipway-initrd", Static: true}
	os.Exit(initrd.Run(&initrdBin, func() int { return testenv.RunWithMinIO(m, "kernel-registry", &s3) }))
}

// stack is the catalog, the converter and kernel-registry on a real
// nats-server and the shared MinIO, each on its own bus connection.
type stack struct {
	t                      *testing.T
	ctx                    context.Context
	url                    string
	store                  *blob.Store
	cli                    *bus.Bus
	rec                    *testenv.Recorder
	log                    *slog.Logger
	uploads, files, images string // buckets
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := newCatalogStack(t)
	kr := New(s.connect(Name), s.store, Config{Config: worker.Config{TempDir: t.TempDir(), Logger: s.log},
		UploadBucket: s.uploads, FilesBucket: s.files, Initrd: initrdBin})
	s.run(Name, kr.Run, kr.Ready())
	return s
}

// newCatalogStack is the stack without kernel-registry.
func newCatalogStack(t *testing.T) *stack {
	t.Helper()
	url, _ := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	store, err := blob.New(s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	sfx := testenv.Unique()
	s := &stack{t: t, ctx: ctx, url: url, store: store,
		uploads: "uploads-" + sfx, files: "files-" + sfx, images: "images-" + sfx}
	s.cli = s.connect("cli")
	if err := s.cli.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	s.rec = testenv.Record(t, s.cli.Conn(), nil, "slipway.evt.>")
	log := testenv.Logger(t, slog.LevelWarn)
	s.log = log
	cat := catalog.New(s.connect("catalog"), store, catalog.Config{
		Datastores: []catalog.Datastore{
			{Name: "default", Kind: catalog.KindImage, Bucket: s.images, Types: []schemas.ImageType{"OS", "CDROM", "DATABLOCK"}},
			{Name: "files", Kind: catalog.KindFile, Bucket: s.files, Types: []schemas.ImageType{"KERNEL", "RAMDISK", "CONTEXT"}},
		},
		UploadBucket: s.uploads, VerifyDigest: true, Logger: log,
	})
	s.run("catalog", cat.Run, cat.Ready())
	conv := converter.New(s.connect("converter"), store, converter.Config{Config: worker.Config{TempDir: t.TempDir(), Logger: log},
		Locations: blob.Locations{DatastoreBuckets: []string{s.images, s.files}, UploadBucket: s.uploads}})
	s.run("converter", conv.Run, nil)
	t.Cleanup(cancel)
	s.waitService("converter")
	if err := store.EnsureBucket(ctx, s.uploads); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *stack) connect(service string) *bus.Bus {
	s.t.Helper()
	return testenv.Connect(s.t, s.ctx, s.url, service)
}

// run runs a service until the test ends; given ready, it returns once
// the service is ready.
func (s *stack) run(name string, run func(context.Context) error, ready <-chan struct{}) {
	s.t.Helper()
	if ready == nil {
		testenv.Run(s.t, s.ctx, name, run)
		return
	}
	testenv.Start(s.t, s.ctx, name, run, ready)
}

func (s *stack) waitService(name string) { testenv.WaitForService(s.t, s.url, name) }

// stage uploads data as the CLI does for kernel add and returns its s3://
// URL.
func (s *stack) stage(data io.Reader, size int64, name string) string {
	return s.stageUnder(blob.UserKernelPrefix(acl.AdminUser), data, size, name)
}

func (s *stack) stageUnder(prefix string, data io.Reader, size int64, name string) string {
	s.t.Helper()
	info, err := s.store.Put(s.ctx, s.uploads, blob.StagingKey(prefix, name), data, size)
	if err != nil {
		s.t.Fatal(err)
	}
	return info.URL()
}

// stageFile stages path as the CLI of the test's client (oneadmin) does
// for kernel add: under its own kernels/<user>/.
func (s *stack) stageFile(path string) string {
	return s.stageFileUnder(blob.UserKernelPrefix(acl.AdminUser), path)
}

func (s *stack) stageFileUnder(prefix, path string) string {
	s.t.Helper()
	return testenv.Upload(s.t, s.ctx, s.store, path, s.uploads, blob.StagingKey(prefix, filepath.Base(path))).URL()
}

// add calls kernel-registry add and returns the added kernel, or the
// failure.
func (s *stack) add(req schemas.KernelRegistryAdd, timeout time.Duration) (schemas.Kernel, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	m, err := s.cli.Call(ctx, Name, "add", req, []string{"added"})
	var k schemas.Kernel
	if err == nil {
		err = schemas.Validate(schemas.KindEvent, Name, "added", m.Data)
	}
	if err == nil {
		err = json.Unmarshal(m.Data, &k)
	}
	return k, err
}

// image asks the catalog for an image.
func (s *stack) image(id int64) schemas.Image {
	s.t.Helper()
	return testenv.Query[schemas.Image](s.t, s.ctx, s.cli, "catalog", "show", map[string]int64{"id": id})
}

// waitReady polls the catalog until the image is READY.
func (s *stack) waitReady(id int64, timeout time.Duration) (img schemas.Image) {
	s.t.Helper()
	settled := func() bool {
		img = s.image(id)
		return img.State == schemas.ImageStateReady || img.State == schemas.ImageStateError
	}
	if !testenv.Eventually(timeout, 200*time.Millisecond, settled) {
		s.t.Fatalf("image %d still %s after %s", id, img.State, timeout)
	}
	if img.State == schemas.ImageStateError {
		s.t.Fatalf("image %d: ERROR %s", id, img.Error)
	}
	return img
}

// objects lists a bucket.
func (s *stack) objects(bucket string) []string {
	s.t.Helper()
	keys, err := s.store.List(s.ctx, bucket, "")
	if err != nil && !blob.IsNotFound(err) {
		s.t.Fatal(err)
	}
	return keys
}

func kernelFiles(t *testing.T) (dir string) {
	t.Helper()
	for _, f := range []string{"vmlinuz", "linux-image.deb", "version"} {
		dir = filepath.Dir(testenv.RepoFile(t, "bin/kernel/"+f, "run tools/fetch-kernel.sh"))
	}
	return dir
}

// TestAddDebianPackage adds Debian's linux-image package: a KERNEL and a
// RAMDISK image become READY in the catalog, and show reports the facts.
func TestAddDebianPackage(t *testing.T) {
	dir := kernelFiles(t)
	version, _ := os.ReadFile(filepath.Join(dir, "version"))
	s := newStack(t)
	start := time.Now()
	src := s.stageFile(filepath.Join(dir, "linux-image.deb"))
	k, err := s.add(schemas.KernelRegistryAdd{Source: src, Filename: "linux-image-test.deb"}, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	added := time.Since(start)
	if k.Format != schemas.KernelFormatBzimage || k.Arch != "x86_64" || k.Version != strings.TrimSpace(string(version)) ||
		!k.Pvh || k.PvhEntry == 0 || k.Initrd == nil || k.Modules < 20 || k.Vmlinux == "" || k.Source != schemas.KernelSourceAdd ||
		k.Name != "vmlinuz-"+k.Version || k.Compression != schemas.KernelCompressionXz {
		t.Fatalf("added %+v", k)
	}
	kimg := s.waitReady(k.ID, 3*time.Minute)
	rd := s.waitReady(*k.Initrd, 3*time.Minute)
	t.Logf("added in %s, both images READY after %s: kernel %d (%d bytes), initrd %d (%d bytes, %d modules)",
		added.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), k.ID, kimg.Size, rd.ID, rd.Size, k.Modules)
	if kimg.Type != schemas.ImageTypeKernel || kimg.Datastore != "files" || kimg.SHA256 != k.SHA256 || kimg.Size != k.Size {
		t.Errorf("kernel image %+v, record sha %s size %d", kimg, k.SHA256, k.Size)
	}
	if rd.Type != schemas.ImageTypeRamdisk || rd.Name != k.Name+"-initrd" {
		t.Errorf("initrd image %+v", rd)
	}
	// The kept vmlinux is the ELF.
	bucket, key, _ := blob.ParseURL(k.Vmlinux)
	rc, err := s.store.GetRange(s.ctx, bucket, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	io.ReadFull(rc, head)
	rc.Close()
	if string(head) != "\x7fELF" || bucket != s.files {
		t.Errorf("vmlinux %s starts with %q", k.Vmlinux, head)
	}
	// show by ID and by name, list.
	var byID, byName schemas.Kernel
	var all []schemas.Kernel
	if err := s.cli.Query(s.ctx, Name, "show", map[string]int64{"id": k.ID}, &byID); err != nil {
		t.Fatal(err)
	}
	if err := s.cli.Query(s.ctx, Name, "show", map[string]string{"name": k.Name}, &byName); err != nil {
		t.Fatal(err)
	}
	if err := s.cli.Query(s.ctx, Name, "list", nil, &all); err != nil {
		t.Fatal(err)
	}
	if byID.SHA256 != k.SHA256 || byName.ID != k.ID || len(all) != 1 || *all[0].Initrd != *k.Initrd {
		t.Errorf("show %+v / %+v, list %+v", byID, byName, all)
	}
	if err := s.cli.Query(s.ctx, Name, "show", map[string]int64{"id": 99}, nil); !bus.IsNotFound(err) {
		t.Errorf("show of a missing kernel: %v", err)
	}
	// The upload and the staged files are gone once the catalog has them.
	if left := s.objects(s.uploads); len(left) > 0 {
		t.Errorf("left in the upload bucket: %v", left)
	}
	// The KERNEL image's READY did not make the examiner take it over.
	time.Sleep(time.Second)
	if ex := s.rec.All(func(m *natsMsg) bool { return strings.Contains(m.Subject, ".kernel-registry.examined.") }); len(ex) > 0 {
		t.Errorf("add's own image was examined again: %s", ex[0].Data)
	}
}

// TestAddKernelFiles adds a bzImage and an ELF vmlinux (no package: no
// initrd), and a second kernel under a name already taken.
func TestAddKernelFiles(t *testing.T) {
	dir := kernelFiles(t)
	s := newStack(t)
	bz, err := s.add(schemas.KernelRegistryAdd{Source: s.stageFile(filepath.Join(dir, "vmlinuz")), Name: "k"}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if bz.Format != schemas.KernelFormatBzimage || !bz.Pvh || bz.Firecracker || bz.FirecrackerReason == "" ||
		bz.Initrd != nil || bz.Modules != 0 || bz.Vmlinux == "" || bz.Name != "k" {
		t.Fatalf("bzImage: %+v", bz)
	}
	s.waitReady(bz.ID, 3*time.Minute)

	// The vmlinux it kept, added as a kernel of its own: an ELF that fits
	// Firecracker, with the PVH note.
	bucket, key, _ := blob.ParseURL(bz.Vmlinux)
	rc, size, err := s.store.Get(s.ctx, bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	src := s.stage(rc, size, "vmlinux")
	rc.Close()
	elf, err := s.add(schemas.KernelRegistryAdd{Source: src}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if elf.Format != schemas.KernelFormatElf || !elf.Pvh || elf.PvhEntry != bz.PvhEntry || !elf.Firecracker ||
		elf.Vmlinux != "" || elf.Version != bz.Version || elf.Name != "vmlinux" || elf.Compression != "" {
		t.Fatalf("ELF: %+v", elf)
	}
	s.waitReady(elf.ID, 3*time.Minute)

	// A name taken: the catalog's refusal, and nothing left behind.
	_, err = s.add(schemas.KernelRegistryAdd{Source: s.stageFile(filepath.Join(dir, "vmlinuz")), Name: "k"}, 5*time.Minute)
	if !bus.IsCallError(err) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second kernel named k: %v", err)
	}
	t.Log(err)
	var all []schemas.Kernel
	if err := s.cli.Query(s.ctx, Name, "list", nil, &all); err != nil || len(all) != 2 {
		t.Fatalf("list: %v %+v", err, all)
	}
	time.Sleep(500 * time.Millisecond) // the catalog deletes its staged copies as it commits
	if left := s.objects(s.uploads); len(left) > 0 {
		t.Errorf("left in the upload bucket: %v", left)
	}
	if vm := s.objects(s.files); len(vm) != 3 { // kernels/0/vmlinux and the two images' blobs
		t.Errorf("files bucket: %v", vm)
	}
}

// TestAddUndone: a failure after the KERNEL image exists (its initrd's
// name is taken) deletes that image and leaves nothing else.
func TestAddUndone(t *testing.T) {
	dir := kernelFiles(t)
	version, _ := os.ReadFile(filepath.Join(dir, "version"))
	v := strings.TrimSpace(string(version))
	s := newStack(t)
	first, err := s.add(schemas.KernelRegistryAdd{Source: s.stageFile(filepath.Join(dir, "vmlinuz")), Name: "pkg-initrd"}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s.waitReady(first.ID, 3*time.Minute)

	// A small package: Debian's kernel and a modules tree whose drivers are
	// all built in, so its initrd is quick to make.
	root := t.TempDir()
	files := map[string][]byte{
		"DEBIAN/control":                        []byte("Package: linux-image-test\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: test\n"),
		"lib/modules/" + v + "/modules.builtin": []byte("kernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/block/virtio_blk.ko\nkernel/fs/ext4/ext4.ko\n"),
	}
	if files["boot/vmlinuz-"+v], err = os.ReadFile(filepath.Join(dir, "vmlinuz")); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(root, name), data, 0o644)
	}
	pkg := filepath.Join(t.TempDir(), "linux-image-test.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, pkg).CombinedOutput(); err != nil {
		testenv.Skip(t, "dpkg-deb: %v %s", err, out)
	}
	_, err = s.add(schemas.KernelRegistryAdd{Source: s.stageFile(pkg), Name: "pkg"}, 5*time.Minute)
	var ce *bus.CallError
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, `"pkg-initrd" already exists`) {
		t.Fatalf("%v", err)
	}
	if id := strings.TrimPrefix(ce.Msg.Subject, "slipway.evt.kernel-registry.failed."); id == ce.Msg.Subject || strings.HasPrefix(id, "cmd-") {
		t.Errorf("failed on %s: want the KERNEL image's ID", ce.Msg.Subject)
	}
	// The KERNEL image "pkg" goes once its import is over.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(300 * time.Millisecond) {
		var images []schemas.Image
		if err := s.cli.Query(s.ctx, "catalog", "list", struct{}{}, &images); err != nil {
			t.Fatal(err)
		}
		if len(images) == 1 && images[0].ID == first.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("images left: %+v", images)
		}
	}
	var all []schemas.Kernel
	if err := s.cli.Query(s.ctx, Name, "list", nil, &all); err != nil || len(all) != 1 || all[0].ID != first.ID {
		t.Fatalf("kernels: %v %+v", err, all)
	}
	if left := s.objects(s.uploads); len(left) > 0 {
		t.Errorf("left in the upload bucket: %v", left)
	}
}

// TestAddBadFiles: what is not an x86_64 kernel fails with a clear error,
// and nothing is left staged or created.
func TestAddBadFiles(t *testing.T) {
	dir := kernelFiles(t)
	vmlinuz, err := os.ReadFile(filepath.Join(dir, "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 256<<10)
	for i := range random {
		random[i] = byte(i*7 + i/251)
	}
	arm64 := make([]byte, 64<<10)
	copy(arm64[0x38:], "ARM\x64")
	s := newStack(t)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"random", random, "not a kernel"},
		{"truncated", vmlinuz[:len(vmlinuz)/2], "truncated bzImage"},
		{"arm64", arm64, "aarch64"},
		{"broken package", append([]byte("!<arch>\n"), random[:1000]...), "not a Debian kernel package"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := s.stage(bytes.NewReader(c.data), int64(len(c.data)), c.name+".bin")
			_, err := s.add(schemas.KernelRegistryAdd{Source: src}, time.Minute)
			var ce *bus.CallError
			if !errors.As(err, &ce) || !strings.Contains(ce.Message, c.want) || ce.Code != schemas.CodeInvalidInput {
				t.Fatalf("%v, want an invalid-input failure saying %q", err, c.want)
			}
			if err := schemas.Validate(schemas.KindEvent, Name, "failed", ce.Msg.Data); err != nil {
				t.Error(err)
			}
			t.Logf("failed: %s", ce.Message)
			if left := s.objects(s.uploads); len(left) > 0 {
				t.Errorf("left in the upload bucket: %v", left)
			}
		})
	}
	var images []schemas.Image
	if err := s.cli.Query(s.ctx, "catalog", "list", struct{}{}, &images); err == nil && len(images) > 0 {
		t.Errorf("images were created: %+v", images)
	}
	t.Run("invalid command", func(t *testing.T) {
		_, err := s.add(schemas.KernelRegistryAdd{}, time.Minute)
		if !bus.IsCallError(err) || !strings.Contains(err.Error(), "source") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("not a staged upload", func(t *testing.T) {
		// An object elsewhere is refused and left alone.
		if _, err := s.store.Put(s.ctx, s.images, "keep/me", strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
		_, err := s.add(schemas.KernelRegistryAdd{Source: "s3://" + s.images + "/keep/me"}, time.Minute)
		if !bus.IsCallError(err) || !strings.Contains(err.Error(), `kernel uploads of "oneadmin" are s3://`+s.uploads+"/kernels/oneadmin/<id>/<file>") {
			t.Fatalf("%v", err)
		}
		if _, err := s.store.Stat(s.ctx, s.images, "keep/me"); err != nil {
			t.Errorf("the named object was deleted: %v", err)
		}
		// Nor may it take another upload in the upload bucket (an image
		// the CLI staged for the catalog), nor another user's kernel upload.
		for _, prefix := range []string{blob.UserStagingPrefix(acl.AdminUser), blob.UserKernelPrefix("alice")} {
			other := s.stageUnder(prefix, strings.NewReader("someone's disk"), 14, "disk.raw")
			_, err = s.add(schemas.KernelRegistryAdd{Source: other}, time.Minute)
			if !bus.IsCallError(err) || !strings.Contains(err.Error(), "kernels/oneadmin/<id>/<file>") {
				t.Fatalf("%s: %v", other, err)
			}
			bucket, key, _ := blob.ParseURL(other)
			if _, err := s.store.Stat(s.ctx, bucket, key); err != nil {
				t.Errorf("%s was deleted: %v", other, err)
			}
		}
	})
}

// TestExamineCatalogKernel: a KERNEL image registered through the catalog
// is examined when it becomes READY.
func TestExamineCatalogKernel(t *testing.T) {
	dir := kernelFiles(t)
	s := newStack(t)
	src := s.stageFileUnder(blob.UserStagingPrefix(acl.AdminUser), filepath.Join(dir, "vmlinuz")) // as the CLI stages image-create
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	m, err := s.cli.Call(ctx, "catalog", "image-create", schemas.ImageCreate{Name: "plain-kernel", Datastore: "files",
		Type: schemas.ImageTypeKernel, Path: src, Staged: true}, []string{"image-created"})
	if err != nil {
		t.Fatal(err)
	}
	var img schemas.Image
	json.Unmarshal(m.Data, &img)
	s.waitReady(img.ID, 3*time.Minute)
	var k schemas.Kernel
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := s.cli.Query(s.ctx, Name, "show", map[string]int64{"id": img.ID}, &k)
		if err == nil {
			break
		}
		if !bus.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatalf("show %d: %v", img.ID, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if k.Source != schemas.KernelSourceCatalog || k.Name != "plain-kernel" || !k.Pvh || k.Format != schemas.KernelFormatBzimage ||
		k.Initrd != nil || k.Vmlinux == "" {
		t.Fatalf("examined %+v", k)
	}
	ev := s.rec.Wait(t, "examined event", func(m *natsMsg) bool { return strings.Contains(m.Subject, ".kernel-registry.examined.") })
	if err := schemas.Validate(schemas.KindEvent, Name, "examined", ev.Data); err != nil {
		t.Error(err)
	}

	// Deleting the image forgets the kernel and removes its vmlinux.
	if _, err := s.cli.Call(ctx, "catalog", "image-delete", schemas.ImageRef{ID: img.ID}, []string{"image-deleted"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		err := s.cli.Query(s.ctx, Name, "show", map[string]int64{"id": img.ID}, nil)
		if bus.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kernel %d still known after its image was deleted: %v", img.ID, err)
		}
	}
	if left := s.objects(s.files); len(left) > 0 {
		t.Errorf("left in the files bucket: %v", left)
	}
}

type natsMsg = nats.Msg
