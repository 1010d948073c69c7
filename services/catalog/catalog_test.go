package catalog

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

func TestImportLifecycle(t *testing.T) {
	h := newHarness(t)
	staged := "s3://" + h.cfg.UploadBucket + "/uploads/oneadmin/abc/disk.vmdk"
	h.put(staged, []byte("pretend this is a vmdk"))

	img := h.create(schemas.ImageCreate{Name: "alpine", Path: staged, Staged: true, Format: schemas.DiskFormatQcow2,
		Description: "test", Attributes: map[string]string{"OS": "alpine"}})
	if img.ID != 0 || State(img.State) != StateLocked || img.User != DefaultUser || img.Group != DefaultGroup ||
		img.Datastore != "default" || img.Type != schemas.ImageTypeOS || img.Origin != staged || img.SagaID == "" {
		t.Fatalf("created image = %+v", img)
	}
	cmd, conv := h.convertCommand(img.ID)
	wantDest := "s3://" + h.cfg.Datastores[0].Bucket + "/images/0/" + img.SagaID + "/disk.qcow2"
	if cmd.Subject != "slipway.cmd.converter.import.catalog" || conv.Dest != wantDest || conv.Source != staged ||
		conv.Format != schemas.DiskFormatQcow2 || conv.MaxVirtualSize != DefaultMaxVirtualSize {
		t.Fatalf("converter command %s = %+v", cmd.Subject, conv)
	}
	if err := schemas.Validate(schemas.KindCommand, "converter", "import", cmd.Data); err != nil {
		t.Fatal(err)
	}
	// The saga ID is the workflow's correlation, carried by every message.
	if c := cmd.Header.Get(envelope.HeaderCorrelationID); c != img.SagaID {
		t.Fatalf("converter command correlation %q, saga %q", c, img.SagaID)
	}
	if got := h.mustShow(0); State(got.State) != StateLocked {
		t.Fatalf("show during import: %s", got.State)
	}

	data := []byte(strings.Repeat("qcow2 data ", 1000))
	ev := h.convert(cmd, conv, data, schemas.DiskFormatQcow2)
	h.waitState(0, StateReady)
	got := h.mustShow(0)
	if State(got.State) != StateReady || got.Format != schemas.DiskFormatQcow2 || got.Size != ev.VirtualSize ||
		got.StoredSize != int64(len(data)) || got.SHA256 != sha(data) || got.Source != wantDest || got.Error != "" {
		t.Fatalf("READY image = %+v", got)
	}
	waitFor(t, "the staged upload to be deleted", func() bool { return !h.exists(staged) })
	if !h.exists(wantDest) {
		t.Error("the image blob is gone")
	}
	waitFor(t, "the saga to succeed", func() bool {
		sg, err := h.svc.sagas.Get(h.ctx, img.SagaID)
		return err == nil && sg.Status == saga.StatusSucceeded && sg.Phase == PhaseCommit
	})
	// A duplicate converted event changes nothing.
	h.converterEvent(cmd, "converted", 0, ev)
	time.Sleep(300 * time.Millisecond)
	if got := stateChanges(h.rec, 0); !slices.Equal(got, []string{"->LOCKED", "LOCKED->READY"}) {
		t.Fatalf("state changes = %v", got)
	}
	updated := h.rec.All(func(m *nats.Msg) bool { return m.Subject == "slipway.evt.catalog.image-updated.0" })
	if len(updated) != 1 {
		t.Fatalf("%d image-updated events, want 1", len(updated))
	}
}

func TestBlankDatablock(t *testing.T) {
	h := newHarness(t)
	img := h.create(schemas.ImageCreate{Name: "scratch", SizeMiB: 64, FS: schemas.FilesystemExt4})
	if img.Type != schemas.ImageTypeDatablock || img.Origin != "blank" {
		t.Fatalf("blank image = %+v", img)
	}
	cmd, c := h.convertCommand(img.ID)
	var blank schemas.ConverterCreateBlank
	mustJSON(t, cmd.Data, &blank)
	if cmd.Subject != "slipway.cmd.converter.create-blank.catalog" || blank.SizeMiB != 64 || blank.Format != schemas.DiskFormatRaw ||
		blank.FS != schemas.FilesystemExt4 || !inAttempt(blank.Dest, 0, "disk.raw") {
		t.Fatalf("create-blank = %s %+v", cmd.Subject, blank)
	}
	h.convert(cmd, c, make([]byte, 4096), schemas.DiskFormatRaw)
	h.waitState(img.ID, StateReady)
}

func TestConverterFailedPutsImageInError(t *testing.T) {
	h := newHarness(t)
	staged := "s3://" + h.cfg.UploadBucket + "/uploads/oneadmin/x/disk.qcow2"
	h.put(staged, []byte("bad disk"))
	env := h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "bad", Path: staged, Staged: true})
	cmd, c := h.convertCommand(0)
	if !inAttempt(c.Dest, 0, "disk") {
		t.Fatalf("without a format the dest has no extension, got %s", c.Dest)
	}
	h.put(c.Dest, []byte("half a conversion")) // what a dying converter left
	h.converterEvent(cmd, "failed", 0, schemas.Failure{Code: schemas.CodeInvalidInput, ImageID: new(int64(0)), Phase: string(schemas.ConverterPhaseInspect),
		Error: `qcow2 header: backing file "/etc/passwd" is not allowed`})
	ev := h.waitState(0, StateError)
	if !strings.Contains(ev.Error, `backing file "/etc/passwd" is not allowed`) || ev.From != schemas.ImageStateLocked {
		t.Fatalf("state-changed = %+v", ev)
	}
	_, failed := h.waitFailed(env)
	if failed.ImageID == nil || *failed.ImageID != 0 || failed.Command != "slipway.cmd.catalog.image-create.oneadmin" ||
		failed.Code != schemas.CodeInvalidInput || failed.Retryable ||
		!strings.Contains(failed.Error, "/etc/passwd") {
		t.Fatalf("failed = %+v", failed)
	}
	img := h.mustShow(0)
	if State(img.State) != StateError || !strings.Contains(img.Error, "inspect: ") {
		t.Fatalf("image = %+v", img)
	}
	waitFor(t, "compensation to delete the blobs", func() bool { return !h.exists(c.Dest) && !h.exists(staged) })
	waitFor(t, "the saga to be compensated", func() bool {
		sg, err := h.svc.sagas.Get(h.ctx, img.SagaID)
		return err == nil && sg.Status == saga.StatusFailed && slices.Contains(sg.Compensated, PhaseConvert)
	})
	// An ERROR image can be deleted, and the name is free again.
	h.command(schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: 0})
	h.rec.Wait(t, "image-deleted", func(m *nats.Msg) bool { return m.Subject == "slipway.evt.catalog.image-deleted.0" })
	if _, err := h.show(0); !bus.IsNotFound(err) {
		t.Fatalf("show deleted image: %v, want 404", err)
	}
	img2 := h.create(schemas.ImageCreate{Name: "bad", SizeMiB: 1})
	if img2.ID != 1 {
		t.Fatalf("IDs are never reused: got %d, want 1", img2.ID)
	}
}

func TestDeadlineExpiryCompensates(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ConvertDeadline = 400 * time.Millisecond })
	staged := "s3://" + h.cfg.UploadBucket + "/uploads/oneadmin/x/slow"
	h.put(staged, []byte("slow"))
	img := h.create(schemas.ImageCreate{Name: "slow", Path: staged, Staged: true, Format: schemas.DiskFormatRaw})
	cmd, c := h.convertCommand(img.ID)
	h.put(c.Dest, []byte("partial"))
	ev := h.waitState(img.ID, StateError)
	if ev.Error != "import did not finish within 400ms" {
		t.Fatalf("error = %q", ev.Error)
	}
	waitFor(t, "compensation", func() bool { return !h.exists(c.Dest) && !h.exists(staged) })
	// The converter finishes late: its blob has no owner and goes too, and
	// the image stays in ERROR.
	h.convert(cmd, c, []byte("late data"), schemas.DiskFormatRaw)
	waitFor(t, "the late blob to be deleted", func() bool { return !h.exists(c.Dest) })
	if got := h.mustShow(img.ID); State(got.State) != StateError {
		t.Fatalf("late converted event changed the image: %+v", got)
	}
	// A late report naming a key of another attempt of the image: the
	// catalog deletes only keys of the saga the report is about.
	other := "s3://" + h.cfg.Datastores[0].Bucket + "/" + blob.AttemptPrefix(img.ID, "6a0e8f4b-1c2d-4e3f-8a9b-0c1d2e3f4a5b") + "disk.raw"
	h.put(other, []byte("another attempt's blob"))
	h.converterEvent(cmd, "converted", img.ID, schemas.ConverterConverted{ImageID: img.ID, Dest: other, Format: schemas.DiskFormatRaw,
		VirtualSize: 4096, Size: 22, SHA256: sha([]byte("another attempt's blob"))})
	h.convert(cmd, c, []byte("late again"), schemas.DiskFormatRaw) // handled after the one above
	waitFor(t, "the second late blob to be deleted", func() bool { return !h.exists(c.Dest) })
	if !h.exists(other) {
		t.Fatal("a late report deleted another attempt's blob")
	}
}

func TestIllegalTransitionsThroughTheBus(t *testing.T) {
	h := newHarness(t)
	img := h.create(schemas.ImageCreate{Name: "k", Path: "https://example.invalid/vmlinuz", Datastore: "files", Type: schemas.ImageTypeKernel})
	lockedDelete := h.command(schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: img.ID})
	_, f := h.waitFailed(lockedDelete)
	if f.Error != "image 0 is LOCKED: wait for its import to finish (or fail) before deleting it" {
		t.Fatalf("delete LOCKED: %q", f.Error)
	}
	cmd, c := h.convertCommand(img.ID)
	if !c.File || c.Format != "" || !inAttempt(c.Dest, 0, "disk.raw") || !strings.Contains(c.Dest, "files-") {
		t.Fatalf("kernel import = %+v", c)
	}
	h.convert(cmd, c, []byte("kernel"), schemas.DiskFormatRaw)
	h.waitState(img.ID, StateReady)

	cases := []struct {
		verb string
		data any
		want string
	}{
		{schemas.CommandCatalogImagePersistent, schemas.ImageRef{ID: 0}, "image 0 is a KERNEL file: file images cannot be persistent"},
		{schemas.CommandCatalogImageEnable, schemas.ImageRef{ID: 7}, "image 7 does not exist"},
		{schemas.CommandCatalogImageRename, schemas.ImageRename{ID: 9, Name: "x"}, "image 9 does not exist"},
	}
	for _, tc := range cases {
		_, f := h.waitFailed(h.command(tc.verb, tc.data))
		if f.Error != tc.want {
			t.Errorf("%s: error %q, want %q", tc.verb, f.Error, tc.want)
		}
	}
	// disable → DISABLED; disable again is a no-op; enable → READY.
	h.command(schemas.CommandCatalogImageDisable, schemas.ImageRef{ID: 0})
	h.waitState(0, StateDisabled)
	h.command(schemas.CommandCatalogImageDisable, schemas.ImageRef{ID: 0})
	h.command(schemas.CommandCatalogImageEnable, schemas.ImageRef{ID: 0})
	h.waitState(0, StateReady)
	h.command(schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: 0})
	h.rec.Wait(t, "image-deleted", func(m *nats.Msg) bool { return m.Subject == "slipway.evt.catalog.image-deleted.0" })
	want := []string{"->LOCKED", "LOCKED->READY", "READY->DISABLED", "DISABLED->READY", "READY->DELETE"}
	if got := stateChanges(h.rec, 0); !slices.Equal(got, want) {
		t.Fatalf("state changes = %v, want %v", got, want)
	}
	if h.exists(c.Dest) {
		t.Error("delete left the blob behind")
	}
}

func TestAllowExplainsRefusals(t *testing.T) {
	img := func(st State, rvms int64, typ schemas.ImageType) *schemas.Image {
		return &schemas.Image{ID: 3, State: schemas.ImageState(st), RVMs: rvms, Type: typ, Error: "fetch: 404"}
	}
	cases := []struct {
		op   Op
		img  *schemas.Image
		want string // "" = allowed
	}{
		{OpPersistent, img(StateUsed, 2, "OS"), "image 3 is USED by 2 VMs: it cannot be made persistent while VMs use it"},
		{OpNonPersistent, img(StateUsedPers, 1, "OS"), "image 3 is USED_PERS by a VM: it cannot be made non-persistent while VMs use it"},
		{OpPersistent, img(StateReady, 0, "OS"), ""},
		{OpPersistent, img(StateReady, 0, "RAMDISK"), "image 3 is a RAMDISK file: file images cannot be persistent"},
		{OpNonPersistent, img(StateDisabled, 0, "OS"), ""},
		{OpEnable, img(StateDisabled, 0, "OS"), ""},
		{OpEnable, img(StateLocked, 0, "OS"), "image 3 is LOCKED (its import is still running): only a DISABLED image can be enabled"},
		{OpEnable, img(StateError, 0, "OS"), "image 3 is in ERROR (fetch: 404): it cannot be enabled; delete it and import it again"},
		{OpDisable, img(StateUsed, 1, "OS"), "image 3 is USED by 1 VM: it cannot be disabled while VMs use it"},
		{OpDisable, img(StateLocked, 0, "OS"), "image 3 is LOCKED (its import is still running): only a READY image can be disabled"},
		{OpDelete, img(StateLocked, 0, "OS"), "image 3 is LOCKED: wait for its import to finish (or fail) before deleting it"},
		{OpDelete, img(StateUsedPers, 1, "OS"), "image 3 is USED_PERS by a VM: it cannot be deleted while VMs use it"},
		{OpDelete, img(StateError, 0, "OS"), ""},
		{OpDelete, img(StateDisabled, 0, "OS"), ""},
		{OpRename, img(StateUsed, 4, "OS"), ""},
		{OpRename, img(StateDelete, 0, "OS"), "image 3 is being deleted: it cannot be changed"},
		{OpUpdate, img(StateDelete, 0, "OS"), "image 3 is being deleted: it cannot be changed"},
	}
	for _, tc := range cases {
		err := Allow(tc.op, tc.img)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s on %s: got %q, want %q", tc.op, tc.img.State, got, tc.want)
		}
	}
}

func TestTransitionTable(t *testing.T) {
	for _, st := range schemas.ImageStateValues() {
		if !State(st).Valid() {
			t.Errorf("state %s from the schema has no row in the transition table", st)
		}
	}
	for from, tos := range transitions {
		for _, to := range tos {
			if !to.Valid() {
				t.Errorf("%s → %s: unknown target", from, to)
			}
		}
	}
	yes := [][2]State{{StateLocked, StateReady}, {StateLocked, StateError}, {StateReady, StateDisabled},
		{StateDisabled, StateReady}, {StateError, StateDelete}, {StateUsed, StateReady}}
	no := [][2]State{{StateError, StateReady}, {StateDelete, StateReady}, {StateLocked, StateDelete},
		{StateUsed, StateDelete}, {StateDisabled, StateUsed}, {StateReady, StateReady}}
	for _, p := range yes {
		if !p[0].CanTransition(p[1]) {
			t.Errorf("%s → %s should be allowed", p[0], p[1])
		}
	}
	for _, p := range no {
		if p[0].CanTransition(p[1]) {
			t.Errorf("%s → %s should be refused", p[0], p[1])
		}
	}
}

func TestUsedImageRefusesChangesThroughTheBus(t *testing.T) {
	h := newHarness(t)
	img := h.create(schemas.ImageCreate{Name: "busy", SizeMiB: 1})
	cmd, c := h.convertCommand(img.ID)
	h.convert(cmd, c, make([]byte, 1024), schemas.DiskFormatRaw)
	h.waitState(img.ID, StateReady)
	// No launcher yet: put the image in use the way one will.
	if _, _, err := h.svc.images.Update(h.ctx, img.ID, func(i *schemas.Image) error {
		i.State, i.RVMs = schemas.ImageStateUsed, 2
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for verb, want := range map[string]string{
		schemas.CommandCatalogImagePersistent: "image 0 is USED by 2 VMs: it cannot be made persistent while VMs use it",
		schemas.CommandCatalogImageDisable:    "image 0 is USED by 2 VMs: it cannot be disabled while VMs use it",
		schemas.CommandCatalogImageDelete:     "image 0 is USED by 2 VMs: it cannot be deleted while VMs use it",
	} {
		_, f := h.waitFailed(h.command(verb, schemas.ImageRef{ID: 0}))
		if f.Error != want {
			t.Errorf("%s: %q, want %q", verb, f.Error, want)
		}
	}
}

func TestCreateRefusals(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		req  schemas.ImageCreate
		want string
	}{
		{schemas.ImageCreate{Name: "k", Path: "https://x.invalid/k", Type: schemas.ImageTypeKernel},
			`type KERNEL is a file type: it belongs in a file datastore (such as "files"), not in image datastore "default"`},
		{schemas.ImageCreate{Name: "o", Path: "https://x.invalid/o", Datastore: "files"},
			`type OS is a disk type: it belongs in an image datastore (such as "default"), not in file datastore "files"`},
		{schemas.ImageCreate{Name: "c", Path: "https://x.invalid/c", Datastore: "files", Type: schemas.ImageTypeContext, Persistent: true},
			"type CONTEXT is a file type: file images cannot be persistent"},
		{schemas.ImageCreate{Name: "n", Path: "https://x.invalid/n", Datastore: "nope"},
			`datastore "nope" does not exist (datastores: default, files)`},
		{schemas.ImageCreate{Name: "s", Path: "s3://somebucket/key", Staged: true},
			`source s3://somebucket/key: bucket "somebucket" is not the upload bucket (` + h.cfg.UploadBucket + `) nor listed in SLIPWAY_IMPORT_BUCKETS or SLIPWAY_MARKET_BUCKETS: imports read s3:// only from those`},
		{schemas.ImageCreate{Name: "s", Path: "s3://" + h.cfg.Datastores[0].Bucket + "/images/0/x/disk.raw"},
			"source s3://" + h.cfg.Datastores[0].Bucket + `/images/0/x/disk.raw: bucket "` + h.cfg.Datastores[0].Bucket + `" is a datastore bucket, not the upload bucket (` + h.cfg.UploadBucket + `) nor listed in SLIPWAY_IMPORT_BUCKETS: an import never reads another image's blob`},
		{schemas.ImageCreate{Name: "s", Path: "s3://" + h.cfg.UploadBucket + "/vms/7/x/disk-0.qcow2", Staged: true},
			"staged path s3://" + h.cfg.UploadBucket + "/vms/7/x/disk-0.qcow2: oneadmin stages only s3://" + h.cfg.UploadBucket + "/uploads/oneadmin/<id>/<file> (the CLI writes there with the upload keys the catalog issues); the import deletes a staged object, so nothing else may be staged"},
		{schemas.ImageCreate{Name: "s", Path: "s3://" + h.cfg.UploadBucket + "/uploads/bob/x/disk.qcow2", Staged: true},
			"staged path s3://" + h.cfg.UploadBucket + "/uploads/bob/x/disk.qcow2: oneadmin stages only s3://" + h.cfg.UploadBucket + "/uploads/oneadmin/<id>/<file> (the CLI writes there with the upload keys the catalog issues); the import deletes a staged object, so nothing else may be staged"},
		{schemas.ImageCreate{Name: "b", SizeMiB: 10, Type: schemas.ImageTypeOS},
			"size_mib makes an empty DATABLOCK: an image of type OS needs a path to import from"},
		{schemas.ImageCreate{Name: "b", SizeMiB: 10, Path: "https://x.invalid/b"},
			"give either path (to import data) or size_mib (to make an empty DATABLOCK), not both"},
		{schemas.ImageCreate{Name: "b", SizeMiB: 10, Format: schemas.DiskFormatVMDK},
			"an empty DATABLOCK is made as raw or qcow2, not vmdk"},
	}
	for _, tc := range cases {
		env := h.command(schemas.CommandCatalogImageCreate, tc.req)
		m, f := h.waitFailed(env)
		if f.Error != tc.want {
			t.Errorf("%+v: error %q, want %q", tc.req, f.Error, tc.want)
		}
		if f.ImageID != nil || !strings.HasPrefix(m.Subject, "slipway.evt.catalog.failed.cmd-") {
			t.Errorf("refused create: subject %s, id %v", m.Subject, f.ImageID)
		}
	}
	// Nothing was registered, and no ID was burnt.
	img := h.create(schemas.ImageCreate{Name: "first", SizeMiB: 1})
	if img.ID != 0 {
		t.Fatalf("first image after refusals has ID %d", img.ID)
	}
	// Names are unique per owner.
	_, f := h.waitFailed(h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "first", SizeMiB: 2}))
	if f.Error != `an image named "first" already exists for user oneadmin (ID 0): image names are unique per owner` ||
		f.Code != schemas.CodeConflict {
		t.Fatalf("duplicate name: %q", f.Error)
	}
}

func TestMalformedCommandsDoNotBlock(t *testing.T) {
	h := newHarness(t)
	// The test's witness publishes what no principal may (an unknown
	// verb): the consumer must survive whatever reaches its stream.
	js := testenv.JetStream(t, h.url)
	pub := func(subject string, data []byte) uint64 {
		ack, err := js.Publish(h.ctx, subject, data)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	waitCmdFailed := func(seq uint64) schemas.Failure {
		m := h.rec.Wait(t, fmt.Sprintf("failed event of command %d", seq), func(m *nats.Msg) bool {
			return m.Subject == fmt.Sprintf("slipway.evt.catalog.failed.cmd-%d", seq)
		})
		var f schemas.Failure
		mustJSON(t, m.Data, &f)
		return f
	}
	// Plain `nats pub` style: no envelope at all.
	f := waitCmdFailed(pub("slipway.cmd.catalog.image-create.oneadmin", []byte(`{"name": "x", `)))
	if f.Command != "slipway.cmd.catalog.image-create.oneadmin" || !strings.Contains(f.Error, "catalog.image-create") ||
		f.Code != schemas.CodeInvalidCommand {
		t.Fatalf("malformed JSON: %+v", f)
	}
	f = waitCmdFailed(pub("slipway.cmd.catalog.image-create.oneadmin", []byte(`{"name": "x", "size_mib": 0}`)))
	if !strings.Contains(f.Error, "size_mib") {
		t.Fatalf("schema-invalid: %+v", f)
	}
	f = waitCmdFailed(pub("slipway.cmd.catalog.image-create.oneadmin", []byte(`{"name": "x"}`)))
	if !strings.Contains(f.Error, "path") {
		t.Fatalf("neither path nor size: %+v", f)
	}
	f = waitCmdFailed(pub("slipway.cmd.catalog.image-explode.oneadmin", []byte(`{"id": 1}`)))
	if f.Command != "slipway.cmd.catalog.image-explode.oneadmin" || !strings.HasPrefix(f.Error, `the catalog has no command "image-explode" (commands: `) ||
		!strings.Contains(f.Error, "image-create, image-delete, ") {
		t.Fatalf("unknown verb: %+v", f)
	}
	// The consumer goes on: a valid plain command is processed.
	pub("slipway.cmd.catalog.image-create.oneadmin", []byte(`{"name": "after", "size_mib": 1}`))
	m := h.rec.Wait(t, "image-created", func(m *nats.Msg) bool { return m.Subject == "slipway.evt.catalog.image-created.0" })
	var img schemas.Image
	mustJSON(t, m.Data, &img)
	if img.Name != "after" {
		t.Fatalf("created %+v", img)
	}
}

func TestDuplicateCommandDeliveryCreatesOneImage(t *testing.T) {
	h := newHarness(t)
	// Two deliveries of the same command (same ce-id) that JetStream's own
	// duplicate window does not catch (different Nats-Msg-Id), as after a
	// publisher retry beyond the window.
	env := envelope.Envelope{ID: envelope.NewID(), Type: envelope.Type(ServiceName, schemas.CommandCatalogImageCreate), Source: "/slipway/cli",
		Time: time.Now().UTC(), DataContentType: envelope.ContentTypeJSON}
	env.CorrelationID = env.ID
	body, _ := json.Marshal(schemas.ImageCreate{Name: "once", SizeMiB: 1})
	for i := range 3 {
		msg := &nats.Msg{Subject: "slipway.cmd.catalog.image-create.oneadmin", Header: env.Header(), Data: body}
		msg.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s-%d", env.ID, i))
		if _, err := h.cli.JetStream().PublishMsg(h.ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	h.rec.Wait(t, "image-created", func(m *nats.Msg) bool { return m.Subject == "slipway.evt.catalog.image-created.0" })
	// A later command proves the three were handled.
	next := h.create(schemas.ImageCreate{Name: "next", SizeMiB: 1})
	if next.ID != 1 {
		t.Fatalf("next image has ID %d, want 1: the duplicate made an image", next.ID)
	}
	list := listImages(t, h, schemas.CatalogListRequest{})
	if len(list) != 2 {
		t.Fatalf("%d images, want 2", len(list))
	}
	created := h.rec.All(func(m *nats.Msg) bool { return strings.Contains(m.Subject, ".image-created.") })
	failed := h.rec.All(func(m *nats.Msg) bool { return strings.Contains(m.Subject, ".failed.") })
	if len(created) != 2 || len(failed) != 0 {
		t.Fatalf("%d image-created and %d failed events, want 2 and 0:\n%s", len(created), len(failed), h.rec.Dump())
	}
}

func TestCreateResumesAfterCrash(t *testing.T) {
	h := newHarness(t)
	// A previous delivery allocated ID 0 and claimed the command, then died.
	id, err := h.svc.images.NextID(h.ctx)
	if err != nil || id != 0 {
		t.Fatalf("nextID = %d, %v", id, err)
	}
	ceID := envelope.NewID()
	sagaID := envelope.NewID()
	if _, err := h.svc.dedupClaim(h.ctx, ceID, processed{ImageID: 0, SagaID: sagaID}); err != nil {
		t.Fatal(err)
	}
	h.stop()
	h.start()
	_, err = h.cli.Command(h.ctx, ServiceName, schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "resumed", SizeMiB: 1}, bus.WithID(ceID))
	if err != nil {
		t.Fatal(err)
	}
	m := h.rec.Wait(t, "image-created", func(m *nats.Msg) bool { return strings.Contains(m.Subject, ".image-created.") })
	var img schemas.Image
	mustJSON(t, m.Data, &img)
	if img.ID != 0 || img.SagaID != sagaID {
		t.Fatalf("resumed create made %+v, want ID 0 and saga %s", img, sagaID)
	}
}

func TestConcurrentCreatesGetDistinctIDs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Concurrency = 4 })
	h.start() // a second replica on the same durable consumer
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: fmt.Sprintf("img-%d", i), SizeMiB: 1})
		}()
	}
	wg.Wait()
	waitFor(t, "all images", func() bool {
		return len(h.rec.All(func(m *nats.Msg) bool { return strings.Contains(m.Subject, ".image-created.") })) == n
	})
	list := listImages(t, h, schemas.CatalogListRequest{})
	if len(list) != n {
		t.Fatalf("%d images, want %d", len(list), n)
	}
	for i, img := range list {
		if img.ID != int64(i) {
			t.Fatalf("IDs %v are not 0..%d", ids(list), n-1)
		}
	}
	// And the allocator itself under direct contention.
	var mu sync.Mutex
	got := map[int64]bool{}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := h.svc.images.NextID(h.ctx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if got[id] {
				t.Errorf("ID %d allocated twice", id)
			}
			got[id] = true
		}()
	}
	wg.Wait()
	for id := int64(n); id < n+20; id++ {
		if !got[id] {
			t.Errorf("ID %d was skipped", id)
		}
	}
}

func TestRenameUpdatePersistentAndQueries(t *testing.T) {
	h := newHarness(t)
	a := h.create(schemas.ImageCreate{Name: "a", SizeMiB: 1, Attributes: map[string]string{"K1": "v1", "K2": "v2"}})
	b := h.create(schemas.ImageCreate{Name: "b", SizeMiB: 1})
	updated := func(env envelope.Envelope) schemas.Image {
		m := h.rec.Wait(t, "image-updated", func(m *nats.Msg) bool {
			return strings.Contains(m.Subject, ".image-updated.") && m.Header.Get(envelope.HeaderCausationID) == env.ID
		})
		var img schemas.Image
		mustJSON(t, m.Data, &img)
		return img
	}
	_, f := h.waitFailed(h.command(schemas.CommandCatalogImageRename, schemas.ImageRename{ID: b.ID, Name: "a"}))
	if f.Error != `an image named "a" already exists for user oneadmin (ID 0): image names are unique per owner` {
		t.Fatalf("rename onto a taken name: %q", f.Error)
	}
	if img := updated(h.command(schemas.CommandCatalogImageRename, schemas.ImageRename{ID: a.ID, Name: "a2"})); img.Name != "a2" {
		t.Fatalf("renamed = %+v", img)
	}
	// The old name is free now.
	if img := updated(h.command(schemas.CommandCatalogImageRename, schemas.ImageRename{ID: b.ID, Name: "a"})); img.Name != "a" {
		t.Fatalf("renamed = %+v", img)
	}
	img := updated(h.command(schemas.CommandCatalogImageUpdate, schemas.ImageUpdate{ID: a.ID, Attributes: map[string]string{"K1": "", "K3": "v3"}}))
	if !mapsEqual(img.Attributes, map[string]string{"K2": "v2", "K3": "v3"}) {
		t.Fatalf("merged attributes = %v", img.Attributes)
	}
	img = updated(h.command(schemas.CommandCatalogImageUpdate, schemas.ImageUpdate{ID: a.ID, Attributes: map[string]string{"ONLY": "1"}, Replace: true}))
	if !mapsEqual(img.Attributes, map[string]string{"ONLY": "1"}) {
		t.Fatalf("replaced attributes = %v", img.Attributes)
	}
	if img := updated(h.command(schemas.CommandCatalogImagePersistent, schemas.ImageRef{ID: a.ID})); !img.Persistent {
		t.Fatalf("persistent = %+v", img)
	}
	if img := updated(h.command(schemas.CommandCatalogImageNonpersistent, schemas.ImageRef{ID: a.ID})); img.Persistent {
		t.Fatalf("nonpersistent = %+v", img)
	}

	// Queries.
	var shown schemas.Image
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryCatalogShow, schemas.CatalogShowRequest{Name: "a2"}, &shown); err != nil || shown.ID != a.ID {
		t.Fatalf("show by name: %+v, %v", shown, err)
	}
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryCatalogShow, schemas.CatalogShowRequest{Name: "nope"}, &shown); !bus.IsNotFound(err) {
		t.Fatalf("show missing name: %v", err)
	}
	if _, err := h.show(42); !bus.IsNotFound(err) {
		t.Fatalf("show missing id: %v", err)
	}
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryCatalogShow, nil, &shown); bus.ErrorCode(err) != bus.CodeInvalid {
		t.Fatalf("show without id or name: %v", err)
	}
	if got := listImages(t, h, schemas.CatalogListRequest{State: "LOCKED"}); len(got) != 2 {
		t.Fatalf("LOCKED list = %v", ids(got))
	}
	if got := listImages(t, h, schemas.CatalogListRequest{State: "READY"}); len(got) != 0 {
		t.Fatalf("READY list = %v", ids(got))
	}
	if got := listImages(t, h, schemas.CatalogListRequest{Datastore: "files"}); len(got) != 0 {
		t.Fatalf("files list = %v", ids(got))
	}
	if got := listImages(t, h, schemas.CatalogListRequest{User: "oneadmin"}); len(got) != 2 || got[0].ID != 0 || got[1].ID != 1 {
		t.Fatalf("user list = %v", ids(got))
	}
	var bad []schemas.Image
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryCatalogList, schemas.CatalogListRequest{State: "HAPPY"}, &bad); bus.ErrorCode(err) != bus.CodeInvalid {
		t.Fatalf("list with a bad state: %v", err)
	}
	var ds []Datastore
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryCatalogDatastores, nil, &ds); err != nil || len(ds) != 2 ||
		ds[0].Name != "default" || ds[0].Kind != KindImage || ds[1].Name != "files" || ds[1].Kind != KindFile {
		t.Fatalf("datastores = %+v, %v", ds, err)
	}
}

func TestCommitResumesAfterCrash(t *testing.T) {
	h := newHarness(t)
	img := h.create(schemas.ImageCreate{Name: "r", SizeMiB: 1})
	_, c := h.convertCommand(img.ID)
	h.stop()
	// The converter finished and the catalog crashed right after moving the
	// saga to commit: no message will come again.
	data := []byte("blank disk")
	h.put(c.Dest, data)
	ev := schemas.ConverterConverted{ImageID: img.ID, Dest: c.Dest, Format: schemas.DiskFormatRaw,
		VirtualSize: 1 << 20, Size: int64(len(data)), SHA256: sha(data)}
	if _, err := h.svc.recordResult(h.ctx, img.SagaID, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.sagas.Advance(h.ctx, img.SagaID, PhaseConvert, PhaseCommit, time.Hour, "converted"); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitState(img.ID, StateReady)
	if got := h.mustShow(img.ID); got.SHA256 != sha(data) || got.Size != 1<<20 {
		t.Fatalf("resumed commit: %+v", got)
	}
}

func TestCommitRefusesABlobThatDoesNotMatch(t *testing.T) {
	h := newHarness(t)
	img := h.create(schemas.ImageCreate{Name: "m", SizeMiB: 1})
	cmd, c := h.convertCommand(img.ID)
	h.put(c.Dest, []byte("what is really stored"))
	h.converterEvent(cmd, "converted", img.ID, schemas.ConverterConverted{ImageID: img.ID, Dest: c.Dest,
		Format: schemas.DiskFormatRaw, VirtualSize: 21, Size: 21, SHA256: sha([]byte("something else entirely"))})
	ev := h.waitState(img.ID, StateError)
	if !strings.Contains(ev.Error, "but the converter reported "+sha([]byte("something else entirely"))) {
		t.Fatalf("error = %q", ev.Error)
	}
	waitFor(t, "the bad blob to be deleted", func() bool { return !h.exists(c.Dest) })
}

func listImages(t *testing.T, h *harness, f schemas.CatalogListRequest) []schemas.Image {
	t.Helper()
	var out []schemas.Image
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryCatalogList, f, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(list []schemas.Image) []int64 {
	var out []int64
	for _, img := range list {
		out = append(out, img.ID)
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
