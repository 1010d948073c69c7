package launcher_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/catalog"
	"github.com/slipway/slipway/services/converter"
	cryptoluks "github.com/slipway/slipway/services/crypto-luks"
	"github.com/slipway/slipway/services/crypto-luks/keywrap/keywraptest"
	kernelregistry "github.com/slipway/slipway/services/kernel-registry"
	"github.com/slipway/slipway/services/launcher"
)

// bootTimeout bounds one QEMU boot under TCG on a machine shared with
// other test runs.
const bootTimeout = 300 * time.Second

// s3 is one MinIO shared by the package's tests; each test has its own
// buckets.
var s3 testenv.S3

func TestMain(m *testing.M) { os.Exit(testenv.RunWithMinIO(m, "launcher", &s3)) }

// harness is a catalog, a converter and a launcher over a real nats-server
// and MinIO, with a CLI-side bus and a recorder of every event.
type harness struct {
	t       *testing.T
	ctx     context.Context
	url     string
	blobs   *blob.Store
	cli     *bus.Bus
	rec     *testenv.Recorder
	uploads string
	sfx     string
	work    string
	lcfg    launcher.Config

	launcherStop func()
}

// newHarness starts the services; mutate tunes the launcher's Config.
func newHarness(t *testing.T, mutate ...func(*launcher.Config)) *harness {
	t.Helper()
	url, _ := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	blobs, err := blob.New(s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	sfx := testenv.Unique()
	// A short work dir: QMP sockets live in it.
	work, err := os.MkdirTemp("", "lt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	h := &harness{t: t, ctx: ctx, url: url, blobs: blobs, uploads: "uploads-" + sfx, sfx: sfx, work: work}
	h.cli = h.connect("cli")
	h.rec = testenv.Record(t, h.cli.Conn(), checkSchema(t), "slipway.evt.>")
	h.startCatalog(sfx)
	h.startConverter()
	h.lcfg = launcher.Config{WorkDir: work, UploadBucket: h.uploads, ShutdownTimeout: 5 * time.Second,
		QuitGrace: 5 * time.Second, Logger: testenv.Logger(t, slog.LevelInfo)}
	for _, f := range mutate {
		f(&h.lcfg)
	}
	h.startLauncher()
	return h
}

// checkSchema validates every launcher event against its schema.
func checkSchema(t *testing.T) func(*nats.Msg) {
	return func(m *nats.Msg) {
		parts := strings.SplitN(m.Subject, ".", 5)
		if len(parts) < 5 || parts[2] != launcher.Name {
			return
		}
		if err := schemas.Validate(schemas.KindEvent, parts[2], parts[3], m.Data); err != nil {
			t.Errorf("launcher event %s does not match its schema: %v\n%s", m.Subject, err, m.Data)
		}
	}
}

func (h *harness) connect(service string) *bus.Bus {
	h.t.Helper()
	return testenv.Connect(h.t, h.ctx, h.url, service)
}

func (h *harness) startCatalog(sfx string) {
	b := h.connect(catalog.ServiceName)
	cfg := catalog.Config{
		Datastores: []catalog.Datastore{
			{Name: "default", Kind: catalog.KindImage, Bucket: "img-" + sfx, Types: []schemas.ImageType{"OS", "CDROM", "DATABLOCK"}},
			{Name: "files", Kind: catalog.KindFile, Bucket: "files-" + sfx, Types: []schemas.ImageType{"KERNEL", "RAMDISK", "CONTEXT"}},
		},
		UploadBucket: h.uploads, VerifyDigest: true, ReconcileInterval: time.Second,
		IdentityDir: testenv.ServerIdentityDir(h.t, h.url), Logger: testenv.Logger(h.t, slog.LevelWarn),
	}
	svc := catalog.New(b, h.blobs, cfg)
	testenv.Start(h.t, h.ctx, "catalog", svc.Run, svc.Ready())
}

func (h *harness) startConverter() {
	b := h.connect("converter")
	svc := converter.New(b, h.blobs, converter.Config{Config: worker.Config{TempDir: h.t.TempDir(),
		Logger: slog.New(slog.DiscardHandler)}, Locations: h.locations()})
	testenv.Run(h.t, h.ctx, "converter", svc.Run)
	h.waitService("converter")
}

// startLauncher runs a launcher on the harness's work dir (again, after
// stopLauncher, as a restarted process would).
func (h *harness) startLauncher() {
	b := h.connect(launcher.Name)
	svc := launcher.New(b, h.blobs, h.lcfg)
	h.launcherStop = testenv.Start(h.t, h.ctx, "launcher", svc.Run, svc.Ready())
}

func (h *harness) stopLauncher() { h.launcherStop() }

func (h *harness) waitService(name string) { testenv.WaitForService(h.t, h.url, name) }

// importFile stages a local file and registers it in the catalog, waiting
// until the image is READY.
func (h *harness) importFile(path string, req schemas.ImageCreate) schemas.Image {
	h.t.Helper()
	if err := h.blobs.EnsureBucket(h.ctx, h.uploads); err != nil {
		h.t.Fatal(err)
	}
	info := testenv.Upload(h.t, h.ctx, h.blobs, path, h.uploads, blob.StagingKey(blob.UserStagingPrefix(acl.AdminUser), path))
	req.Path, req.Staged = info.URL(), true
	m, err := h.cli.Call(h.ctx, "catalog", "image-create", req, []string{"image-created"})
	if err != nil {
		h.t.Fatalf("image-create %s: %v", req.Name, err)
	}
	var img schemas.Image
	mustJSON(h.t, m.Data, &img)
	return h.waitImage(img.ID, func(i schemas.Image) bool { return i.State != "LOCKED" }, "not LOCKED")
}

// image asks the catalog for an image.
func (h *harness) image(id int64) schemas.Image {
	h.t.Helper()
	return testenv.Query[schemas.Image](h.t, h.ctx, h.cli, "catalog", "show", map[string]int64{"id": id})
}

// waitImage polls the catalog until ok holds.
func (h *harness) waitImage(id int64, ok func(schemas.Image) bool, what string) (img schemas.Image) {
	h.t.Helper()
	if !testenv.Eventually(60*time.Second, 100*time.Millisecond, func() bool { img = h.image(id); return ok(img) }) {
		h.t.Fatalf("image %d: still not %s: %+v", id, what, img)
	}
	return img
}

// call sends a launcher command and waits for its answer.
func (h *harness) call(verb string, data any, accept ...string) (*bus.Msg, error) {
	ctx, cancel := context.WithTimeout(h.ctx, 2*time.Minute)
	defer cancel()
	return h.cli.Call(ctx, launcher.Name, verb, data, accept)
}

// mustCall is call that fails the test on a refusal.
func (h *harness) mustCall(verb string, data any, accept ...string) *bus.Msg {
	h.t.Helper()
	m, err := h.call(verb, data, accept...)
	if err != nil {
		h.t.Fatalf("launcher %s: %v", verb, err)
	}
	return m
}

// createTemplate stores a template and returns its ID.
func (h *harness) createTemplate(name, text string) int64 {
	h.t.Helper()
	m := h.mustCall(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: name, Template: text}, schemas.EventLauncherTemplateCreated)
	var t schemas.VMTemplate
	mustJSON(h.t, m.Data, &t)
	return t.ID
}

// instantiate makes a VM and returns its ID.
func (h *harness) instantiate(tid int64, name string) int64 {
	h.t.Helper()
	m := h.mustCall(schemas.CommandLauncherInstantiate, schemas.LauncherInstantiate{TemplateID: tid, Name: name}, schemas.EventLauncherVMCreated)
	var c schemas.LauncherVMCreated
	mustJSON(h.t, m.Data, &c)
	return c.ID
}

// vm asks the launcher for a VM.
func (h *harness) vm(id int64) schemas.VM {
	h.t.Helper()
	return testenv.Query[schemas.VM](h.t, h.ctx, h.cli, launcher.Name, schemas.QueryLauncherVM, schemas.LauncherVMRequest{ID: id})
}

// waitVM waits until VM id is in state want; a final state other than
// want fails the test with the VM's reason.
func (h *harness) waitVM(id int64, want schemas.VMState, timeout time.Duration) schemas.VM {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		vm := h.vm(id)
		switch {
		case vm.State == want:
			return vm
		case vm.State == schemas.VMStateFailed || vm.State == schemas.VMStateDone:
			h.t.Fatalf("VM %d is %s (%s), want %s\nconsole:\n%s", id, vm.State, vm.Reason, want, h.console(id))
		case time.Now().After(deadline):
			h.t.Fatalf("VM %d still %s after %s, want %s\nconsole:\n%s", id, vm.State, timeout, want, h.console(id))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// console reads a VM's whole console.
func (h *harness) console(id int64) string {
	h.t.Helper()
	var sb strings.Builder
	for off := int64(0); ; {
		var c schemas.LauncherConsoleReply
		if err := h.cli.Query(h.ctx, launcher.Name, schemas.QueryLauncherConsole, schemas.LauncherConsoleRequest{ID: id, Offset: off}, &c); err != nil {
			h.t.Fatalf("console %d: %v", id, err)
		}
		sb.WriteString(c.Text)
		if c.Next >= c.Size || c.Next == off {
			return sb.String()
		}
		off = c.Next
	}
}

// states lists the state changes of VM id seen so far, in order.
func (h *harness) states(id int64) []string {
	var out []string
	for _, m := range h.rec.All(func(m *nats.Msg) bool {
		return m.Subject == fmt.Sprintf("slipway.evt.launcher.vm-state-changed.%d", id)
	}) {
		var ev schemas.LauncherVMStateChanged
		mustJSON(h.t, m.Data, &ev)
		out = append(out, string(ev.To))
	}
	return out
}

func mustJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

// noQEMULeft fails the test when a QEMU process runs from the work dir.
func (h *harness) noQEMULeft() {
	h.t.Helper()
	var pids []string
	if !testenv.Eventually(10*time.Second, 200*time.Millisecond, func() bool {
		pids = qemuPIDs(h.work)
		return len(pids) == 0
	}) {
		h.t.Fatalf("QEMU processes left running from %s: %v", h.work, pids)
	}
}

func qemuPIDs(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte("qemu-system")) && bytes.Contains(b, []byte(dir)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// needTools skips the test when a binary the boot needs is missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		testenv.Program(t, tool, "make deps")
	}
}

// rawDisk writes a raw disk of size bytes starting with text.
func rawDisk(t *testing.T, size int64, text string) string {
	t.Helper()
	return testenv.WriteDisk(t, filepath.Join(t.TempDir(), "disk.raw"), size, strings.NewReader(text))
}

// cpioEntry is one file of a newc archive.
type cpioEntry struct {
	name         string
	mode         uint32
	data         []byte
	major, minor uint32 // of a device node
}

// initramfs writes a gzip newc archive holding busybox and init, whose
// /init is script: the guest the tests boot.
func initramfs(t *testing.T, script string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testenv.Skip(t, "a static busybox is needed at /bin/busybox (busybox-static): %v", err)
	}
	entries := []cpioEntry{
		{name: "bin", mode: 0o040755}, {name: "dev", mode: 0o040755}, {name: "proc", mode: 0o040755},
		{name: "sys", mode: 0o040755}, {name: "mnt", mode: 0o040755},
		{name: "dev/console", mode: 0o020600, major: 5, minor: 1},
		{name: "bin/busybox", mode: 0o100755, data: bb},
		{name: "init", mode: 0o100755, data: []byte(script)},
	}
	p := filepath.Join(t.TempDir(), "initrd.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	if err := writeNewc(zw, entries); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeNewc(w io.Writer, entries []cpioEntry) error {
	pad := func(n int) error {
		if n%4 == 0 {
			return nil
		}
		_, err := w.Write(make([]byte, 4-n%4))
		return err
	}
	entries = append(entries, cpioEntry{name: "TRAILER!!!"})
	for i, e := range entries {
		nlink := 1
		if e.mode&0o170000 == 0o040000 {
			nlink = 2
		}
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			i+1, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(e.name)+1, 0)
		if _, err := io.WriteString(w, hdr+e.name+"\x00"); err != nil {
			return err
		}
		if err := pad(len(hdr) + len(e.name) + 1); err != nil {
			return err
		}
		if _, err := w.Write(e.data); err != nil {
			return err
		}
		if err := pad(len(e.data)); err != nil {
			return err
		}
	}
	return nil
}

// startCryptoLUKS runs crypto-luks with a fresh key-encryption key.
func (h *harness) startCryptoLUKS() {
	h.t.Helper()
	keys := keywraptest.New(h.t)
	b := h.connect(cryptoluks.Name)
	svc := cryptoluks.New(b, h.blobs, cryptoluks.Config{Config: worker.Config{TempDir: h.t.TempDir(),
		Logger: slog.New(slog.DiscardHandler)}, Keys: keys, Locations: h.locations(), IterTime: 10 * time.Millisecond})
	testenv.Start(h.t, h.ctx, "crypto-luks", svc.Run, svc.Ready())
}

// locations are the harness's buckets, as the catalog has them.
func (h *harness) locations() blob.Locations {
	return blob.Locations{DatastoreBuckets: []string{"img-" + h.sfx, "files-" + h.sfx}, UploadBucket: h.uploads}
}

// startKernelRegistry runs kernel-registry on the harness's buckets.
func (h *harness) startKernelRegistry() {
	h.t.Helper()
	b := h.connect(kernelregistry.Name)
	svc := kernelregistry.New(b, h.blobs, kernelregistry.Config{Config: worker.Config{TempDir: h.t.TempDir(),
		Logger: slog.New(slog.DiscardHandler)}, UploadBucket: h.uploads, FilesBucket: "files-" + h.sfx})
	testenv.Run(h.t, h.ctx, "kernel-registry", svc.Run)
	h.waitService(kernelregistry.Name)
}

// recordingQemuImg writes a qemu-img wrapper for Config.QEMUImg that appends
// to log, for every call, what the launcher started it with: its
// subcommand, ulimit -v (KiB) and -t (s), its pid and process group, and its
// environment as execve gave it; then it runs the real qemu-img.
func recordingQemuImg(t *testing.T) (bin, log string) {
	t.Helper()
	log = filepath.Join(t.TempDir(), "qemu-img.log")
	bin = testenv.Script(t, "qemu-img", `#!/bin/sh
echo "$1 as=$(ulimit -v) cpu=$(ulimit -t) pid=$$ pgrp=$(cut -d' ' -f5 /proc/$$/stat) env=$(tr '\0' ' ' < /proc/$$/environ)" >> `+log+`
exec qemu-img "$@"
`)
	return bin, log
}

// checkQemuImgConfined reads recordingQemuImg's log: each subcommand in
// want must have run, and every call must have run under the shared
// runner's default limits (qemuimg.Runner's Light ones for info and create,
// Heavy ones for convert and snapshot), with run.ChildEnv as its whole
// environment, in its own process group.
func checkQemuImgConfined(t *testing.T, log string, want ...string) {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("the launcher never ran Config.QEMUImg: %v", err)
	}
	light := fmt.Sprintf("as=%d cpu=%d", qemuimg.DefaultAddressSpace>>10, qemuimg.DefaultCPUSeconds)
	heavy := fmt.Sprintf("as=%d cpu=%d", qemuimg.DefaultConvertAddressSpace>>10, qemuimg.DefaultConvertCPUSeconds)
	limits := map[string]string{"info": light, "create": light, "convert": heavy, "snapshot": heavy}
	env := "env=" + strings.Join(run.ChildEnv(), " ")
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		sub, rest, _ := strings.Cut(line, " ")
		seen[sub] = true
		if lim, ok := limits[sub]; !ok || !strings.HasPrefix(rest, lim+" ") {
			t.Errorf("qemu-img %s ran with %q, want limits %q", sub, rest, lim)
		}
		var pid, pgrp string
		if i := strings.Index(rest, "pid="); i >= 0 {
			fmt.Sscanf(rest[i:], "pid=%s pgrp=%s", &pid, &pgrp)
		}
		if pid == "" || pid != pgrp {
			t.Errorf("qemu-img %s: %q: want its own process group", sub, rest)
		}
		if i := strings.Index(rest, "env="); i < 0 || strings.TrimSpace(rest[i:]) != env {
			t.Errorf("qemu-img %s: %q: want only %q", sub, rest, env)
		}
	}
	for _, sub := range want {
		if !seen[sub] {
			t.Errorf("qemu-img %s never ran through Config.QEMUImg; log:\n%s", sub, data)
		}
	}
}
