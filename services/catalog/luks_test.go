package catalog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// luksStandIn plays crypto-luks for the catalog's tests until the real
// service can be run beside it (an integration test will): it consumes
// crypto-luks commands from the work queue like the service will, makes
// real LUKS files with qemu-img and answers with the real event format.
// Per image, it can be told to fail, to report a wrong digest, or to hold
// the job until the test releases it.
type luksStandIn struct {
	t   testing.TB
	h   *harness
	bus *bus.Bus

	mu       sync.Mutex
	mode     map[int64]string // "fail", "badsum", "hold"
	real     bool             // make real LUKS files with qemu-img
	held     []heldJob
	slots    map[int64][]int64 // key slots per image (slot changes)
	commands []*bus.Msg
	deleted  []secretDeleted
}

type heldJob struct {
	m   *bus.Msg
	img int64
}

// secretDeleted is a secret-delete command as received, and whether the
// image's blob was still there then.
type secretDeleted struct {
	schemas.CryptoLuksSecretDelete
	blobLeft bool
}

func newLuksStandIn(h *harness) *luksStandIn {
	h.t.Helper()
	testenv.Program(h.t, "qemu-img", "it makes the LUKS files (apt-get install qemu-utils)")
	f := &luksStandIn{t: h.t, h: h, bus: h.connect(cryptoService), mode: map[int64]string{}}
	stop, err := f.bus.ConsumeCommands(h.ctx, f.handle)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(stop.Stop)
	return f
}

func (f *luksStandIn) setMode(id int64, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode[id] = mode
}

func (f *luksStandIn) handle(ctx context.Context, m *bus.Msg) error {
	if err := schemas.Validate(schemas.KindCommand, cryptoService, m.Name, m.Data); err != nil {
		f.t.Errorf("the catalog sent an invalid %s: %v", m.Subject, err)
		return bus.Terminal(err)
	}
	f.mu.Lock()
	f.commands = append(f.commands, m)
	f.mu.Unlock()
	switch m.Name {
	case "secret-delete":
		var c schemas.CryptoLuksSecretDelete
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return bus.Terminal(err)
		}
		d := secretDeleted{CryptoLuksSecretDelete: c}
		bucket := f.h.cfg.Datastores[0].Bucket
		keys, err := f.h.blobs.List(ctx, bucket, imagePrefix(c.ImageID))
		d.blobLeft = err != nil || len(keys) > 0
		f.mu.Lock()
		f.deleted = append(f.deleted, d)
		f.mu.Unlock()
		return nil
	case "encrypt", "create", "slot-add", "slot-remove", "rotate":
		var c luksJob
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return bus.Terminal(err)
		}
		f.mu.Lock()
		mode := f.mode[c.ImageID]
		if mode == "hold" {
			f.held = append(f.held, heldJob{m, c.ImageID})
			f.mu.Unlock()
			return nil
		}
		f.mu.Unlock()
		return f.job(m)(ctx, m, c.ImageID, mode)
	}
	return bus.Terminal(fmt.Errorf("the stand-in has no command %q", m.Name))
}

// releaseHeld runs the jobs held so far.
func (f *luksStandIn) releaseHeld() {
	f.mu.Lock()
	held := f.held
	f.held = nil
	f.mu.Unlock()
	for _, j := range held {
		if err := f.job(j.m)(f.h.ctx, j.m, j.img, ""); err != nil {
			f.t.Error(err)
		}
	}
}

// job is what the stand-in does for command m.
func (f *luksStandIn) job(m *bus.Msg) func(context.Context, *bus.Msg, int64, string) error {
	if m.Name == "encrypt" || m.Name == "create" {
		return f.work
	}
	return f.changeSlots
}

// luksJob is what an encrypt or create command asks.
type luksJob struct {
	ImageID      int64              `json:"image_id"`
	Source       string             `json:"source"`
	SourceFormat schemas.DiskFormat `json:"source_format"`
	SizeMiB      int64              `json:"size_mib"`
	Dest         string             `json:"dest"`
}

// work makes the LUKS file, stores it and reports it (or fails). It runs
// on the consumer's goroutine, so it returns errors instead of failing
// the test.
func (f *luksStandIn) work(ctx context.Context, m *bus.Msg, id int64, mode string) error {
	var job luksJob
	if err := json.Unmarshal(m.Data, &job); err != nil {
		return bus.Terminal(err)
	}
	bucket, key, err := blob.ParseURL(job.Dest)
	if err != nil {
		return bus.Terminal(err)
	}
	if mode == "fail" {
		// What a crash half way through the upload leaves.
		half := []byte("LUKS\xba\xbe half an upload")
		if _, err := f.h.blobs.Put(ctx, bucket, key, bytes.NewReader(half), int64(len(half))); err != nil {
			return err
		}
		_, err := f.bus.Event(ctx, "failed", idToken(id), schemas.Failure{Code: schemas.CodeInvalidInput, ImageID: &id,
			Error: "qemu-img convert: Could not read image for determining its format: Input/output error"}, bus.CausedBy(m.Envelope))
		return err
	}
	data, virtual, err := f.makeLUKS(ctx, m.Name, job)
	if err != nil {
		return err
	}
	if _, err := f.h.blobs.Put(ctx, bucket, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return err
	}
	ev := schemas.CryptoLuksEncrypted{ImageID: id, Dest: job.Dest, VirtualSize: virtual, Size: int64(len(data)),
		SHA256: sha(data), Secret: uuid.NewString()}
	if mode == "badsum" {
		ev.SHA256 = sha([]byte("not what was stored"))
	}
	_, err = f.bus.Event(ctx, "encrypted", idToken(id), ev, bus.CausedBy(m.Envelope))
	return err
}

// makeLUKS returns the LUKS file for a job and its virtual size: made by
// qemu-img when f.real (a few seconds of key derivation on a busy
// machine), else a stand-in blob with a LUKS magic, for the tests about
// the catalog's bookkeeping.
func (f *luksStandIn) makeLUKS(ctx context.Context, verb string, job luksJob) ([]byte, int64, error) {
	var plain []byte
	virtual := job.SizeMiB << 20
	if verb == "encrypt" {
		bucket, key, err := blob.ParseURL(job.Source)
		if err != nil {
			return nil, 0, bus.Terminal(err)
		}
		rc, _, err := f.h.blobs.Get(ctx, bucket, key)
		if err != nil {
			return nil, 0, err
		}
		plain, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, 0, err
		}
		virtual = int64(len(plain))
	}
	f.mu.Lock()
	real := f.real
	f.mu.Unlock()
	if !real {
		return append([]byte("LUKS\xba\xbe\x00\x01 stand-in for "+verb+" "), plain...), virtual, nil
	}
	dir, err := os.MkdirTemp("", "luks-stand-in-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	out, pass := filepath.Join(dir, "disk.luks"), filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte(rand.Text()), 0o600); err != nil {
		return nil, 0, err
	}
	obj, opts := "secret,id=sec0,file="+pass, "key-secret=sec0,iter-time=10"
	if verb == "encrypt" {
		in := filepath.Join(dir, "in")
		if err := os.WriteFile(in, plain, 0o600); err != nil {
			return nil, 0, err
		}
		err = qemuImg("convert", "-f", string(job.SourceFormat), "-O", "luks", "--object", obj, "-o", opts, in, out)
	} else {
		err = qemuImg("create", "-f", "luks", "--object", obj, "-o", opts, out, fmt.Sprintf("%dM", job.SizeMiB))
	}
	if err != nil {
		return nil, 0, err
	}
	data, err := os.ReadFile(out)
	return data, virtual, err
}

// qemuImg runs qemu-img. QEMU's key-derivation benchmark fails now and
// then on a busy machine ("Unable to get accurate CPU usage": the thread's
// CPU time did not advance during its first round, whatever iter-time
// says); that is retried.
func qemuImg(args ...string) error {
	for try := 1; ; try++ {
		out, err := exec.Command("qemu-img", args...).CombinedOutput()
		if err == nil {
			return nil
		}
		if try < 5 && strings.Contains(string(out), "Unable to get accurate CPU usage") {
			continue
		}
		return fmt.Errorf("qemu-img %s: %v: %s", args[0], err, out)
	}
}

// received returns the crypto-luks commands name received for image id.
func (f *luksStandIn) received(name string, id int64) []*bus.Msg {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*bus.Msg
	for _, m := range f.commands {
		var c struct {
			ImageID int64 `json:"image_id"`
		}
		// Redeliveries (the stand-in's own retries) are the same command.
		dup := slices.ContainsFunc(out, func(o *bus.Msg) bool { return o.Envelope.ID == m.Envelope.ID })
		if m.Name == name && json.Unmarshal(m.Data, &c) == nil && c.ImageID == id && !dup {
			out = append(out, m)
		}
	}
	return out
}

func (f *luksStandIn) secretDeletes() []secretDeleted {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deleted)
}

// encryptCall sends image-encrypt as the CLI does and returns the new
// image (image-created) or the refusal.
func (h *harness) encryptCall(req schemas.ImageEncrypt) (schemas.Image, error) {
	h.t.Helper()
	return answer[schemas.Image](h, schemas.CommandCatalogImageEncrypt, req, schemas.EventCatalogImageCreated)
}

func isLUKS(b []byte) bool { return bytes.HasPrefix(b, []byte("LUKS\xba\xbe")) }

func TestEncryptSaga(t *testing.T) {
	h := newHarness(t)
	luks := newLuksStandIn(h)
	luks.real = true
	disk := bytes.Repeat([]byte("plain text on a disk "), 50000) // ~1 MiB
	src := h.ready(schemas.ImageCreate{Name: "plain", SizeMiB: 1, DevPrefix: "vd", Attributes: map[string]string{"DISTRO": "alpine"}}, disk)

	img, err := h.encryptCall(schemas.ImageEncrypt{ID: src.ID, Name: "plain-luks"})
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != 1 || State(img.State) != StateLocked || img.Type != src.Type || img.Datastore != src.Datastore ||
		img.Persistent || img.DevPrefix != "vd" || img.Attributes["DISTRO"] != "alpine" || img.SagaID == "" {
		t.Fatalf("new image %+v", img)
	}
	h.waitState(img.ID, StateReady)
	got := h.mustShow(img.ID)
	wantDest := "s3://" + h.cfg.Datastores[0].Bucket + "/images/1/" + img.SagaID + "/disk.luks"
	blobData := h.read(wantDest)
	secret := got.Attributes[AttrLUKSSecret]
	if got.Format != schemas.DiskFormatLUKS || got.Source != wantDest || got.SHA256 != sha(blobData) ||
		got.StoredSize != int64(len(blobData)) || got.Size != int64(len(disk)) || got.Attributes[AttrEncryptedFrom] != "0" ||
		uuid.Validate(secret) != nil || !isLUKS(blobData) {
		t.Fatalf("encrypted image %+v", got)
	}

	cmds := luks.received("encrypt", img.ID)
	if len(cmds) != 1 {
		t.Fatalf("%d encrypt commands", len(cmds))
	}
	var c schemas.CryptoLuksEncrypt
	mustJSON(t, cmds[0].Data, &c)
	if c.Source != src.Source || c.SourceFormat != schemas.DiskFormatRaw || c.Dest != wantDest {
		t.Fatalf("encrypt command %+v", c)
	}
	if cmds[0].Envelope.CorrelationID != img.SagaID || cmds[0].Envelope.ID != envelope.StepID(img.SagaID, string(PhaseEncrypt)) {
		t.Fatalf("encrypt command envelope %+v, saga %s", cmds[0].Envelope, img.SagaID)
	}
	waitFor(t, "the saga to succeed", func() bool {
		sg, err := h.svc.sagas.Get(h.ctx, img.SagaID)
		return err == nil && sg.Kind == KindEncrypt && sg.Status == saga.StatusSucceeded
	})
	if s := h.mustShow(src.ID); State(s.State) != StateReady || s.SHA256 != sha(disk) {
		t.Fatalf("the source changed: %+v", s)
	}
	h.wantStates(img.ID, "->LOCKED", "LOCKED->READY")

	// A duplicate report changes nothing (and deletes nothing).
	rep := h.rec.Wait(t, "the encrypted report", func(m *nats.Msg) bool { return m.Subject == "slipway.evt.crypto-luks.encrypted.1" })
	var again schemas.CryptoLuksEncrypted
	mustJSON(t, rep.Data, &again)
	if _, err := luks.bus.Event(h.ctx, "encrypted", "1", again, bus.CausedBy(cmds[0].Envelope)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if d := luks.secretDeletes(); len(d) != 0 || !h.exists(wantDest) {
		t.Fatalf("a duplicate report deleted: secrets %+v, blob gone %v", d, !h.exists(wantDest))
	}
	if again := h.mustShow(img.ID); again.UpdatedAt != got.UpdatedAt {
		t.Fatalf("a duplicate report changed the image: %+v", again)
	}

	// The secret cannot be changed or dropped by hand.
	_, f := h.waitFailed(h.command(schemas.CommandCatalogImageUpdate, schemas.ImageUpdate{ID: img.ID, Attributes: map[string]string{AttrLUKSSecret: ""}}))
	if f.Error != "attribute LUKS_SECRET is set by the catalog on LUKS images: it cannot be changed" {
		t.Fatalf("update LUKS_SECRET: %q", f.Error)
	}

	// Deleting an image without a secret sends nothing; deleting the LUKS
	// image asks crypto-luks to forget its secret once the blob is gone.
	h.command(schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: src.ID})
	h.rec.Wait(t, "image 0 deleted", func(m *nats.Msg) bool { return m.Subject == "slipway.evt.catalog.image-deleted.0" })
	h.command(schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: img.ID})
	h.rec.Wait(t, "image 1 deleted", func(m *nats.Msg) bool { return m.Subject == "slipway.evt.catalog.image-deleted.1" })
	waitFor(t, "secret-delete", func() bool { return len(luks.secretDeletes()) > 0 })
	time.Sleep(200 * time.Millisecond)
	del := luks.secretDeletes()
	if len(del) != 1 || del[0].Secret != secret || del[0].ImageID != img.ID || del[0].blobLeft {
		t.Fatalf("secret-delete commands %+v, want one for %s sent after the blob was deleted", del, secret)
	}
	if h.exists(wantDest) {
		t.Fatal("the LUKS blob is still there")
	}
}

func TestEncryptRefusals(t *testing.T) {
	h := newHarness(t)
	newLuksStandIn(h)
	pers := h.ready(schemas.ImageCreate{Name: "pers", SizeMiB: 1, Persistent: true}, make([]byte, 1024))
	h.mustUse(pers.ID, 5)
	locked := h.create(schemas.ImageCreate{Name: "importing", SizeMiB: 1})
	broken := h.create(schemas.ImageCreate{Name: "broken", SizeMiB: 1})
	cmd, _ := h.convertCommand(broken.ID)
	h.converterEvent(cmd, "failed", broken.ID, schemas.Failure{Code: schemas.CodeInvalidInput, ImageID: new(broken.ID), Phase: string(schemas.ConverterPhaseFetch), Error: "404 Not Found"})
	h.waitState(broken.ID, StateError)
	kernel := h.ready(schemas.ImageCreate{Name: "vmlinuz", Type: schemas.ImageTypeKernel, Datastore: "files", Path: "https://example.invalid/k"}, []byte("k"))
	used := h.ready(schemas.ImageCreate{Name: "shared", SizeMiB: 1}, make([]byte, 1024))
	h.mustUse(used.ID, 6)

	for _, c := range []struct {
		req  schemas.ImageEncrypt
		want string
	}{
		{schemas.ImageEncrypt{ID: pers.ID, Name: "a"}, "image 0 is in use by VM 5 (persistent): encrypt it when the VM is done"},
		{schemas.ImageEncrypt{ID: locked.ID, Name: "b"}, "image 1 is LOCKED (its data is being written): encrypt it once it is READY"},
		{schemas.ImageEncrypt{ID: broken.ID, Name: "c"}, "image 2 is in ERROR (fetch: 404 Not Found): it has no usable data to encrypt"},
		{schemas.ImageEncrypt{ID: kernel.ID, Name: "d"}, "image 3 is a KERNEL file: only disk images (OS, CDROM, DATABLOCK) can be encrypted"},
		{schemas.ImageEncrypt{ID: 77, Name: "e"}, "image 77 does not exist"},
		{schemas.ImageEncrypt{ID: used.ID, Name: "pers"}, `an image named "pers" already exists for user oneadmin (ID 0): image names are unique per owner`},
	} {
		_, err := h.encryptCall(c.req)
		if msg := refusalOf(t, err); msg != c.want {
			t.Errorf("encrypt %+v: %q, want %q", c.req, msg, c.want)
		}
	}
	// A shared image in use may be encrypted: its data does not change.
	img, err := h.encryptCall(schemas.ImageEncrypt{ID: used.ID, Name: "shared-luks", Description: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	h.waitState(img.ID, StateReady)
	got := h.mustShow(img.ID)
	if got.Description != "mine" || got.Format != schemas.DiskFormatLUKS {
		t.Fatalf("encrypted image %+v", got)
	}
	// A LUKS image is not encrypted twice.
	_, err = h.encryptCall(schemas.ImageEncrypt{ID: img.ID, Name: "twice"})
	if msg := refusalOf(t, err); msg != fmt.Sprintf("image %d is LUKS-encrypted already", img.ID) {
		t.Fatalf("encrypt twice: %q", msg)
	}
	// Nothing was registered for the refusals.
	if list := listImages(t, h, schemas.CatalogListRequest{}); len(list) != 6 {
		t.Fatalf("%d images: %v", len(list), ids(list))
	}
}

func TestEncryptFailureCompensates(t *testing.T) {
	h := newHarness(t)
	luks := newLuksStandIn(h)
	src := h.ready(schemas.ImageCreate{Name: "plain", SizeMiB: 1}, make([]byte, 8192))

	// crypto-luks fails half way: ERROR with its message, the partial
	// upload deleted, no secret to forget.
	luks.setMode(1, "fail")
	env := h.command(schemas.CommandCatalogImageEncrypt, schemas.ImageEncrypt{ID: src.ID, Name: "doomed"})
	ev := h.waitState(1, StateError)
	if ev.Error != "encrypt: qemu-img convert: Could not read image for determining its format: Input/output error" {
		t.Fatalf("ERROR %q", ev.Error)
	}
	_, failed := h.waitFailed(env)
	if failed.ImageID == nil || *failed.ImageID != 1 || failed.Command != "slipway.cmd.catalog.image-encrypt.oneadmin" || failed.Error != ev.Error {
		t.Fatalf("failed %+v", failed)
	}
	dest := "s3://" + h.cfg.Datastores[0].Bucket + "/images/1/" + h.mustShow(1).SagaID + "/disk.luks"
	waitFor(t, "the partial upload to be deleted", func() bool { return !h.exists(dest) })
	img := h.mustShow(1)
	waitFor(t, "the saga to be compensated", func() bool {
		sg, err := h.svc.sagas.Get(h.ctx, img.SagaID)
		return err == nil && sg.Status == saga.StatusFailed && slices.Contains(sg.Compensated, PhaseEncrypt)
	})
	if d := luks.secretDeletes(); len(d) != 0 {
		t.Fatalf("secret-delete without a secret: %+v", d)
	}

	// crypto-luks reports a digest the store does not hold: ERROR, and
	// compensation deletes the blob and the secret it made.
	luks.setMode(2, "badsum")
	h.command(schemas.CommandCatalogImageEncrypt, schemas.ImageEncrypt{ID: src.ID, Name: "mismatch"})
	ev = h.waitState(2, StateError)
	if !strings.Contains(ev.Error, "but crypto-luks reported "+sha([]byte("not what was stored"))) {
		t.Fatalf("ERROR %q", ev.Error)
	}
	dest2 := "s3://" + h.cfg.Datastores[0].Bucket + "/images/2/" + h.mustShow(2).SagaID + "/disk.luks"
	waitFor(t, "the blob to be deleted", func() bool { return !h.exists(dest2) })
	waitFor(t, "the secret to be deleted", func() bool { return len(luks.secretDeletes()) == 1 })
	if d := luks.secretDeletes()[0]; d.ImageID != 2 || uuid.Validate(d.Secret) != nil {
		t.Fatalf("secret-delete %+v", d)
	}
	if got := h.mustShow(2); got.Attributes[AttrLUKSSecret] != "" || got.Source != "" {
		t.Fatalf("failed image records %+v", got)
	}
	// The source is untouched.
	if s := h.mustShow(src.ID); State(s.State) != StateReady {
		t.Fatalf("source %+v", s)
	}
}

func TestEncryptDeadlineAndLateReport(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.EncryptDeadline = 300 * time.Millisecond })
	luks := newLuksStandIn(h)
	src := h.ready(schemas.ImageCreate{Name: "plain", SizeMiB: 1}, make([]byte, 8192))
	luks.setMode(1, "hold")
	h.command(schemas.CommandCatalogImageEncrypt, schemas.ImageEncrypt{ID: src.ID, Name: "slow"})
	ev := h.waitState(1, StateError)
	if ev.Error != "encrypting image 0 did not finish within 300ms" {
		t.Fatalf("ERROR %q", ev.Error)
	}
	// crypto-luks finishes after all: its blob and secret have no owner.
	waitFor(t, "the job to be held", func() bool { luks.mu.Lock(); defer luks.mu.Unlock(); return len(luks.held) == 1 })
	luks.releaseHeld()
	dest := "s3://" + h.cfg.Datastores[0].Bucket + "/images/1/" + h.mustShow(1).SagaID + "/disk.luks"
	// The secret may be deleted twice (secret-delete is idempotent): by
	// the saga's compensation when the report was recorded just before the
	// deadline failed the saga, and by the late report's redelivery.
	waitFor(t, "the late secret to be deleted", func() bool { return len(luks.secretDeletes()) >= 1 })
	for _, d := range luks.secretDeletes() {
		if first := luks.secretDeletes()[0]; d.ImageID != 1 || d.Secret != first.Secret || uuid.Validate(d.Secret) != nil {
			t.Fatalf("secret-deletes %+v", luks.secretDeletes())
		}
	}
	waitFor(t, "the late blob to be deleted", func() bool { return !h.exists(dest) })
	if got := h.mustShow(1); State(got.State) != StateError {
		t.Fatalf("image %+v", got)
	}
}

func TestLuksCreate(t *testing.T) {
	h := newHarness(t)
	luks := newLuksStandIn(h)
	luks.real = true
	img := h.create(schemas.ImageCreate{Name: "vault", SizeMiB: 16, LUKS: true})
	if img.Type != schemas.ImageTypeDatablock || img.Origin != "blank" {
		t.Fatalf("new image %+v", img)
	}
	h.waitState(img.ID, StateReady)
	got := h.mustShow(img.ID)
	wantDest := "s3://" + h.cfg.Datastores[0].Bucket + "/images/0/" + img.SagaID + "/disk.luks"
	data := h.read(wantDest)
	if got.Format != schemas.DiskFormatLUKS || got.Source != wantDest || got.Size != 16<<20 || got.SHA256 != sha(data) ||
		uuid.Validate(got.Attributes[AttrLUKSSecret]) != nil || got.Attributes[AttrEncryptedFrom] != "" || !isLUKS(data) {
		t.Fatalf("LUKS volume %+v", got)
	}
	cmds := luks.received("create", img.ID)
	var c schemas.CryptoLuksCreate
	if len(cmds) != 1 {
		t.Fatalf("%d create commands", len(cmds))
	}
	mustJSON(t, cmds[0].Data, &c)
	if c.SizeMiB != 16 || c.Dest != wantDest {
		t.Fatalf("create command %+v", c)
	}
	sg, err := h.svc.sagas.Get(h.ctx, got.SagaID)
	if err != nil || sg.Kind != KindLuksCreate {
		t.Fatalf("saga %+v %v", sg, err)
	}
	// An OS disk may be an empty LUKS volume too.
	luks.mu.Lock()
	luks.real = false
	luks.mu.Unlock()
	osImg := h.create(schemas.ImageCreate{Name: "os-vault", Type: schemas.ImageTypeOS, SizeMiB: 8, LUKS: true, Persistent: true})
	h.waitState(osImg.ID, StateReady)

	for _, c := range []struct {
		req  schemas.ImageCreate
		want string
	}{
		{schemas.ImageCreate{Name: "a", LUKS: true, SizeMiB: 8, FS: schemas.FilesystemExt4},
			"fs ext4 cannot be made inside an empty LUKS volume: the catalog never sees its plaintext; make the filesystem from the VM that opens it"},
		{schemas.ImageCreate{Name: "b", LUKS: true, SizeMiB: 8, Type: schemas.ImageTypeCDROM}, "an empty LUKS volume is a DATABLOCK or an OS disk, not CDROM"},
		{schemas.ImageCreate{Name: "c", LUKS: true, SizeMiB: 8, Format: schemas.DiskFormatQcow2}, "an empty LUKS volume is stored as luks, not qcow2"},
		{schemas.ImageCreate{Name: "d", LUKS: true, Path: "s3://somebucket/x"}, "catalog.image-create: /size_mib: is required"},
		{schemas.ImageCreate{Name: "d", LUKS: true, Path: "s3://somebucket/x", SizeMiB: 8}, "luks makes an empty LUKS volume of size_mib: give size_mib and no path (to encrypt existing data, import it and use image-encrypt)"},
		{schemas.ImageCreate{Name: "e", SizeMiB: 8, Attributes: map[string]string{AttrLUKSSecret: uuid.NewString()}}, "attribute LUKS_SECRET is set by the catalog on LUKS images: it cannot be given"},
	} {
		_, f := h.waitFailed(h.command(schemas.CommandCatalogImageCreate, c.req))
		if f.Error != c.want {
			t.Errorf("%+v: %q, want %q", c.req, f.Error, c.want)
		}
	}
}
