package catalog

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/schemas"
)

// cloneCall sends image-clone as the CLI does and returns the new image
// (LOCKED) or the refusal.
func (h *harness) cloneCall(req schemas.ImageClone) (schemas.Image, error) {
	h.t.Helper()
	return answer[schemas.Image](h, schemas.CommandCatalogImageClone, req, schemas.EventCatalogImageCreated)
}

// copyGate holds the copies of the running catalog's clones before they
// start: entered receives each saga that reached its copy; open lets them
// all go. A copy still held when the catalog stops ends with it (a kill).
type copyGate struct {
	entered chan string
	opened  chan struct{}
}

func (h *harness) holdCopies() *copyGate {
	g := &copyGate{entered: make(chan string, 16), opened: make(chan struct{})}
	h.svc.clones.beforeCopy = func(ctx context.Context, sagaID string) {
		g.entered <- sagaID
		select {
		case <-g.opened:
		case <-ctx.Done():
		}
	}
	return g
}

func (g *copyGate) wait(t *testing.T) string {
	t.Helper()
	select {
	case id := <-g.entered:
		return id
	case <-time.After(30 * time.Second):
		t.Fatal("no clone reached its copy")
		return ""
	}
}

func (g *copyGate) open() { close(g.opened) }

// disk is deterministic test data of n bytes.
func disk(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/4096)
	}
	return b
}

func TestClone(t *testing.T) {
	h := newHarness(t)
	data := disk(3 << 20)
	src := h.ready(schemas.ImageCreate{Name: "base", SizeMiB: 3, DevPrefix: "vd", Description: "the base",
		Attributes: map[string]string{"DISTRO": "debian"}}, data)

	img, err := h.cloneCall(schemas.ImageClone{ID: src.ID, Name: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	if State(img.State) != StateLocked || img.User != "oneadmin" || img.Type != src.Type || img.Datastore != src.Datastore ||
		img.DevPrefix != "vd" || img.Attributes["DISTRO"] != "debian" || img.Persistent {
		t.Fatalf("new clone %+v", img)
	}
	h.waitState(img.ID, StateReady)
	got := h.mustShow(img.ID)
	if got.SHA256 != src.SHA256 || got.Size != src.Size || got.StoredSize != src.StoredSize || got.Format != src.Format ||
		got.Source == src.Source || !inAttempt(got.Source, img.ID, "disk.raw") {
		t.Fatalf("clone %+v\nsource %+v", got, src)
	}
	if !bytes.Equal(h.read(got.Source), data) {
		t.Fatal("the clone's bytes differ from the source's")
	}
	h.wantStates(src.ID, "->LOCKED", "LOCKED->READY", "READY->CLONE", "CLONE->READY")
	h.wantStates(img.ID, "->LOCKED", "LOCKED->READY")
	if s := h.mustShow(src.ID); State(s.State) != StateReady || len(s.CloningIds) != 0 {
		t.Fatalf("source after the clone: %+v", s)
	}
	// A clone can be cloned, into the same datastore named explicitly.
	again, err := h.cloneCall(schemas.ImageClone{ID: img.ID, Name: "copy-of-copy", Datastore: "default"})
	if err != nil {
		t.Fatal(err)
	}
	h.waitState(again.ID, StateReady)
	if !bytes.Equal(h.read(h.mustShow(again.ID).Source), data) {
		t.Fatal("the second clone's bytes differ")
	}
}

// TestCloneSourceIsCLONEWhileCopying: the source shows CLONE while copies
// run, counts them (cloning_ids) and goes back to what it was, USED while a
// VM holds it, READY once the last clone ends; a VM released meanwhile
// leaves it CLONE.
func TestCloneSourceIsCLONEWhileCopying(t *testing.T) {
	h := newHarness(t)
	src := h.ready(schemas.ImageCreate{Name: "base", SizeMiB: 1}, disk(1<<20))
	h.mustUse(src.ID, 7)

	gate := h.holdCopies()
	a, err := h.cloneCall(schemas.ImageClone{ID: src.ID, Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	gate.wait(t)
	b, err := h.cloneCall(schemas.ImageClone{ID: src.ID, Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	gate.wait(t)
	s := h.mustShow(src.ID)
	if State(s.State) != StateClone || !slices.Equal(s.CloningIds, []int64{a.ID, b.ID}) || s.RVMs != 1 {
		t.Fatalf("source while two clones copy: %+v", s)
	}
	if _, err := h.use(src.ID, 8); err == nil || !strings.Contains(err.Error(), "being cloned") {
		t.Fatalf("a VM took a source being cloned: %v", err)
	}
	gate.open()
	h.waitState(a.ID, StateReady)
	h.waitState(b.ID, StateReady)
	h.wantStates(src.ID, "->LOCKED", "LOCKED->READY", "READY->USED", "USED->CLONE", "CLONE->USED")
	if s := h.mustShow(src.ID); State(s.State) != StateUsed || s.RVMs != 1 || len(s.CloningIds) != 0 {
		t.Fatalf("source after its clones: %+v", s)
	}

	// The VM lets go while a clone copies: the source stays CLONE, then
	// becomes READY.
	gate = h.holdCopies()
	c, err := h.cloneCall(schemas.ImageClone{ID: src.ID, Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	gate.wait(t)
	h.mustRelease(src.ID, 7, nil)
	if s := h.mustShow(src.ID); State(s.State) != StateClone || s.RVMs != 0 {
		t.Fatalf("source released while cloned: %+v", s)
	}
	gate.open()
	h.waitState(c.ID, StateReady)
	waitFor(t, "source READY", func() bool { return State(h.mustShow(src.ID).State) == StateReady })
}

func TestCloneRefusals(t *testing.T) {
	h := newHarness(t)
	src := h.ready(schemas.ImageCreate{Name: "base", SizeMiB: 1}, disk(4096))
	refused := func(what string, req schemas.ImageClone, says string) {
		t.Helper()
		_, err := h.cloneCall(req)
		if err == nil {
			t.Fatalf("%s: cloned", what)
		}
		if msg := refusalOf(t, err); !strings.Contains(msg, says) {
			t.Errorf("%s: refused with %q, want %q", what, msg, says)
		}
	}
	// A kernel (a file image) written as the kernel registry's import
	// would leave it.
	kernel := schemas.Image{ID: 900, Name: "vmlinuz", Datastore: "files", Type: schemas.ImageTypeKernel, State: schemas.ImageStateReady,
		Source: src.Source, SHA256: src.SHA256, User: "oneadmin", Group: "oneadmin", Permissions: "600", CreatedAt: now(), UpdatedAt: now()}
	if _, err := h.svc.images.Create(h.ctx, kernel.ID, &kernel); err != nil {
		t.Fatal(err)
	}
	refused("a kernel", schemas.ImageClone{ID: 900, Name: "k2"}, "KERNEL images cannot be cloned")
	luks := kernel
	luks.ID, luks.Name, luks.Datastore, luks.Type, luks.Format = 901, "sealed", "default", schemas.ImageTypeDatablock, schemas.DiskFormatLUKS
	luks.Attributes = map[string]string{AttrLUKSSecret: "3f1c2a9e-8d4b-4c2a-9f0e-1b2c3d4e5f60"}
	if _, err := h.svc.images.Create(h.ctx, luks.ID, &luks); err != nil {
		t.Fatal(err)
	}
	refused("a LUKS image", schemas.ImageClone{ID: 901, Name: "k3"}, "image 901 is LUKS-encrypted: a clone would share its secret")
	snapped := luks
	snapped.ID, snapped.Name, snapped.Format, snapped.Attributes, snapped.Persistent = 902, "snapped", schemas.DiskFormatQcow2, nil, true
	snapped.Snapshots = []schemas.ImageSnapshot{{ID: 0, Name: "before", Parent: -1, Active: true, Date: now()}}
	if _, err := h.svc.images.Create(h.ctx, snapped.ID, &snapped); err != nil {
		t.Fatal(err)
	}
	refused("an image with snapshots", schemas.ImageClone{ID: 902, Name: "k4"}, "Cannot clone images with snapshots")
	refused("into a file datastore", schemas.ImageClone{ID: src.ID, Name: "x", Datastore: "files"},
		`datastore "files" is a file datastore and "default" an image datastore: a clone stays on its source's driver`)
	refused("into no datastore", schemas.ImageClone{ID: src.ID, Name: "x", Datastore: "nowhere"}, `datastore "nowhere" does not exist`)
	refused("a taken name", schemas.ImageClone{ID: src.ID, Name: "base"}, `an image named "base" already exists`)
	refused("a missing image", schemas.ImageClone{ID: 77, Name: "x"}, "image 77 does not exist")

	if _, err := h.call(schemas.CommandCatalogImageDisable, schemas.ImageRef{ID: src.ID}, schemas.EventCatalogStateChanged); err != nil {
		t.Fatal(err)
	}
	h.waitState(src.ID, StateDisabled)
	refused("a disabled image", schemas.ImageClone{ID: src.ID, Name: "x"}, "image 0 is DISABLED: only READY, USED or CLONE images can be cloned")

	locked := h.create(schemas.ImageCreate{Name: "importing", SizeMiB: 1})
	refused("a LOCKED image", schemas.ImageClone{ID: locked.ID, Name: "x"}, "is LOCKED (its data is being written): clone it once it is READY")

	// Nothing was left behind: no clone record, no blob beyond the two
	// images'.
	for _, img := range listImages(t, h, schemas.CatalogListRequest{}) {
		if img.Name == "x" || img.Name == "k2" || img.Name == "k3" || img.Name == "k4" {
			t.Errorf("a refused clone left image %+v", img)
		}
	}
	if keys := h.imageKeys(); len(keys) != 1 {
		t.Errorf("blobs after the refusals: %v", keys)
	}
}

// TestCloneNeedsUse: a user clones what they may use, and the clone is
// theirs, counted by their quotas; without use the command is forbidden.
func TestCloneNeedsUse(t *testing.T) {
	h := newHarness(t)
	bob := h.newUser("bob", "users")
	alice := h.newUser("alice", "users")
	img := h.bobsImage(bob)
	_, err := answerFrom[schemas.Image](h, alice, schemas.CommandCatalogImageClone, schemas.ImageClone{ID: img.ID, Name: "mine"}, schemas.EventCatalogImageCreated)
	mustBeForbidden(t, "alice clones bob's 600 image", err, "alice")
	c, err := answerFrom[schemas.Image](h, bob, schemas.CommandCatalogImageClone, schemas.ImageClone{ID: img.ID, Name: "bobs-copy"}, schemas.EventCatalogImageCreated)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "bob" || c.Group != "users" {
		t.Fatalf("bob's clone belongs to %s/%s", c.User, c.Group)
	}
	h.waitState(c.ID, StateReady)

	// A clone counts against the quotas as a create does: with IMAGES 2,
	// bob's third image is refused, and the source is left as it was.
	h.setQuota("user", "bob", ptr(2), nil)
	_, err = answerFrom[schemas.Image](h, bob, schemas.CommandCatalogImageClone, schemas.ImageClone{ID: img.ID, Name: "bobs-third"}, schemas.EventCatalogImageCreated)
	mustExceed(t, "bob's third image, a clone", err, "IMAGES")
	waitFor(t, "the source READY with no clone listed", func() bool {
		s := h.mustShow(img.ID)
		return State(s.State) == StateReady && len(s.CloningIds) == 0
	})
}

// TestCloneKilledMidCopyFinishes: the catalog dies once the clone's record
// is written and its copy started (a half-made object lies under the
// attempt's keys); the next catalog, on the same NATS and MinIO, finishes:
// the clone READY with the source's bytes, nothing else under its keys,
// the source READY again.
func TestCloneKilledMidCopyFinishes(t *testing.T) {
	h := newHarness(t)
	data := disk(2 << 20)
	src := h.ready(schemas.ImageCreate{Name: "base", SizeMiB: 2}, data)
	gate := h.holdCopies()
	img, err := h.cloneCall(schemas.ImageClone{ID: src.ID, Name: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	gate.wait(t)
	sg, err := h.svc.sagas.Get(h.ctx, img.SagaID)
	if err != nil {
		t.Fatal(err)
	}
	var d cloneData
	if err := sg.Decode(&d); err != nil {
		t.Fatal(err)
	}
	// What a copy cut short leaves: part of the object, and a stray.
	h.put(d.Dest, data[:1<<20])
	h.put(strings.TrimSuffix(d.Dest, "disk.raw")+"disk.raw.part", []byte("partial"))
	h.stop()
	if s := h.mustShowAfterRestart(src.ID); State(s.State) != StateClone {
		t.Fatalf("source after the kill: %+v", s)
	}

	h.waitState(img.ID, StateReady)
	got := h.mustShow(img.ID)
	if got.SHA256 != src.SHA256 || !bytes.Equal(h.read(got.Source), data) {
		t.Fatalf("resumed clone %+v", got)
	}
	bucket, key, _ := blob.ParseURL(d.Dest)
	keys, err := h.blobs.List(h.ctx, bucket, attemptOfKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("under the clone's keys: %v", keys)
	}
	waitFor(t, "source READY", func() bool {
		s := h.mustShow(src.ID)
		return State(s.State) == StateReady && len(s.CloningIds) == 0
	})
}

// TestCloneKilledMidCopyRollsBack: the catalog dies mid-copy and the
// source's blob is gone when the next one resumes: the clone ends in
// ERROR, nothing stays under its keys, and the source is READY again.
func TestCloneKilledMidCopyRollsBack(t *testing.T) {
	h := newHarness(t)
	src := h.ready(schemas.ImageCreate{Name: "base", SizeMiB: 1}, disk(1<<20))
	gate := h.holdCopies()
	img, err := h.cloneCall(schemas.ImageClone{ID: src.ID, Name: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	gate.wait(t)
	sg, _ := h.svc.sagas.Get(h.ctx, img.SagaID)
	var d cloneData
	if err := sg.Decode(&d); err != nil {
		t.Fatal(err)
	}
	h.put(d.Dest, []byte("half a copy"))
	h.stop()
	if err := h.blobs.DeleteURL(h.ctx, src.Source); err != nil {
		t.Fatal(err)
	}
	h.start()

	h.waitState(img.ID, StateError)
	if got := h.mustShow(img.ID); !strings.Contains(got.Error, "copy image 0") {
		t.Fatalf("clone in ERROR says %q", got.Error)
	}
	bucket, key, _ := blob.ParseURL(d.Dest)
	waitFor(t, "the clone's keys emptied", func() bool {
		keys, err := h.blobs.List(h.ctx, bucket, attemptOfKey(key))
		return err == nil && len(keys) == 0
	})
	waitFor(t, "source READY", func() bool {
		s := h.mustShow(src.ID)
		return State(s.State) == StateReady && len(s.CloningIds) == 0
	})
}

// mustShowAfterRestart reads image id as the stopped catalog left it, then
// starts a new catalog on the same NATS and MinIO.
func (h *harness) mustShowAfterRestart(id int64) schemas.Image {
	h.t.Helper()
	img, _, err := h.svc.images.Get(h.ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	h.start()
	return *img
}

// TestCloneChecksWhatItCopied: the source's blob no longer matches its
// record (bit rot, same size). The one-request copy has the store record
// the copy's SHA-256, which the commit compares with the record by a
// HEAD: the clone ends in ERROR, though digests are not read back here.
func TestCloneChecksWhatItCopied(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.VerifyDigest = false })
	data := disk(1 << 20)
	src := h.ready(schemas.ImageCreate{Name: "rotten", SizeMiB: 1}, data)
	rotten := bytes.Clone(data)
	rotten[4096] ^= 0xff
	h.put(src.Source, rotten)

	img, err := h.cloneCall(schemas.ImageClone{ID: src.ID, Name: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	h.waitState(img.ID, StateError)
	got := h.mustShow(img.ID)
	t.Logf("the clone ended %s: %s", got.State, got.Error)
	if !strings.Contains(got.Error, "S3 checksum") || !strings.Contains(got.Error, wholeChecksum(src.SHA256)) {
		t.Errorf("clone of a rotten blob: %s %q, want ERROR naming the S3 checksum", got.State, got.Error)
	}
	if s := h.mustShow(src.ID); State(s.State) != StateReady || len(s.CloningIds) != 0 {
		t.Errorf("source after the failed clone: %s %v", s.State, s.CloningIds)
	}
	waitFor(t, "the clone's blob to be deleted", func() bool {
		left, err := h.blobs.List(h.ctx, h.cfg.Datastores[0].Bucket, blob.AttemptPrefix(img.ID, got.SagaID))
		return err == nil && len(left) == 0
	})
}

// TestChecksumsComparable: only checksums of the same kind are compared;
// a clone's expected whole-object checksum and the parts' checksum a copy
// to another server records are not (the copy is read back instead).
func TestChecksumsComparable(t *testing.T) {
	whole, parts := wholeChecksum(strings.Repeat("ab", 32)), "PtbuRExMKDOx+66DF3h2j9pxlsBSsvV1YgWMU0B8TGY=-3"
	for _, c := range []struct {
		reported, stored string
		differs          bool
	}{
		{whole, whole, false},
		{whole, wholeChecksum(strings.Repeat("cd", 32)), true},
		{parts, "xyz-3", true},
		{whole, parts, false},
		{parts, whole, false},
		{"", whole, false},
		{whole, "", false},
	} {
		if got := (storedBlob{s3Checksum: c.stored}).checksumDiffers(c.reported); got != c.differs {
			t.Errorf("reported %q, stored %q: differs %v, want %v", c.reported, c.stored, got, c.differs)
		}
	}
	if wholeChecksum("not hex") != "" {
		t.Error("wholeChecksum of a digest that is not hex")
	}
}
