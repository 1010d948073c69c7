package catalog

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// unpackCommand waits for the ova-unpack command of image id.
func (h *harness) unpackCommand(id int64) (*nats.Msg, schemas.ConverterOvaUnpack) {
	h.t.Helper()
	m, _ := h.convertCommand(id)
	if m.Subject != "slipway.cmd.converter.ova-unpack.catalog" {
		h.t.Fatalf("got %s, want ova-unpack", m.Subject)
	}
	var c schemas.ConverterOvaUnpack
	mustJSON(h.t, m.Data, &c)
	return m, c
}

// TestOVAImportSaga: an OVA import asks the converter to unpack into the
// saga's staging; on its report the first disk is imported as the image,
// the second becomes image <name>-disk1 (an ordinary staged import the
// catalog asks of itself, for the same owner), the launcher gets the VM
// template naming both with the descriptor's CPU, MEMORY and OS, and the
// staged disks are gone once both are READY.
func TestOVAImportSaga(t *testing.T) {
	h := newHarness(t)
	launcher := record(t, testenv.Dial(t, h.url), "slipway.cmd.launcher.>")
	img := h.create(schemas.ImageCreate{Name: "web", Path: "https://images.example.org/web.ova", Ova: true,
		Checksum: "sha256:" + strings.Repeat("a", 64)})
	if img.Type != schemas.ImageTypeOS || img.State != schemas.ImageStateLocked {
		t.Fatalf("image %+v", img)
	}
	cmd, unpack := h.unpackCommand(img.ID)
	staging := "s3://" + h.cfg.UploadBucket + "/ova/" + img.SagaID + "/"
	if unpack.Source != "https://images.example.org/web.ova" || unpack.Staging != staging || len(unpack.Checksums) != 1 {
		t.Fatalf("unpack %+v, want staging %s", unpack, staging)
	}
	disk0, disk1 := blob.OVADisk(staging, 0), blob.OVADisk(staging, 1)
	h.put(disk0, []byte("vmdk 0"))
	h.put(disk1, []byte("vmdk 1"))
	h.converterEvent(cmd, "ova-unpacked", img.ID, schemas.ConverterOvaUnpacked{ImageID: img.ID, Name: "web-01", OSID: 96,
		OSType: "debian12_64Guest", OSDescription: `Debian "12"`, Cpus: 2, MemoryMiB: 1536, Manifest: true,
		Disks: []schemas.OvaDisk{{Staged: disk0, Capacity: 1 << 30, Format: "vmdk", VirtualSize: 1 << 30},
			{Staged: disk1, Capacity: 1 << 26, Format: "vmdk", VirtualSize: 1 << 26}}})

	// The first disk: this image's import, stored as qcow2.
	m0, c0 := h.convertCommand2(img.ID, "import")
	if c0.Source != disk0 || c0.Format != schemas.DiskFormatQcow2 || !inAttempt(c0.Dest, img.ID, "disk.qcow2") {
		t.Fatalf("import of disk 0: %+v", c0)
	}
	// The second: a new image, imported from its staged disk.
	second := h.rec.Wait(t, "image-created of web-disk1", func(m *nats.Msg) bool {
		return strings.Contains(m.Subject, ".image-created.") && strings.Contains(string(m.Data), `"web-disk1"`)
	})
	var img1 schemas.Image
	mustJSON(t, second.Data, &img1)
	if img1.Type != schemas.ImageTypeDatablock || img1.User != img.User || img1.Attributes[AttrOVA] != idToken(img.ID) || img1.Origin != "https://images.example.org/web.ova#disk1" {
		t.Errorf("image of disk 1: %+v", img1)
	}
	m1, c1 := h.convertCommand2(img1.ID, "import")
	if c1.Source != disk1 || c1.Format != schemas.DiskFormatQcow2 {
		t.Fatalf("import of disk 1: %+v", c1)
	}
	// The template.
	tm := launcher.Wait(t, "template-create", func(m *nats.Msg) bool {
		return m.Subject == "slipway.cmd.launcher.template-create.catalog"
	})
	var tc schemas.LauncherTemplateCreate
	mustJSON(t, tm.Data, &tc)
	for _, want := range []string{`NAME="web"`, `CPU="2"`, `VCPU="2"`, `MEMORY="1536"`, `IMAGE_ID="` + idToken(img.ID) + `"`,
		`IMAGE="web-disk1"`, `IMAGE_UNAME="` + img.User + `"`, `GUEST_OS="debian12_64Guest"`, `Debian \"12\"`} {
		if !strings.Contains(strings.ReplaceAll(tc.Template, " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("template lacks %s:\n%s", want, tc.Template)
		}
	}
	if tc.Name != "web" || tc.OnBehalfOf != img.User {
		t.Errorf("template-create %+v", tc)
	}
	// The first image says at once how many disks the OVA has.
	if got := h.mustShow(img.ID); got.Attributes[AttrOVADisks] != "2" || State(got.State) != StateLocked {
		t.Errorf("image %d while importing: %s %v, want LOCKED with %s=2", img.ID, got.State, got.Attributes, AttrOVADisks)
	}
	// The launcher refuses the template (its name is taken): the refusal
	// goes on the first image; a failure of another command does not.
	launcherBus := h.connect("launcher")
	tcEnv, err := envelope.FromHeader(tm.Header)
	if err != nil {
		t.Fatal(err)
	}
	other := envelope.Envelope{ID: "another-command", CorrelationID: tcEnv.CorrelationID}
	for _, c := range []struct {
		cause envelope.Envelope
		msg   string
	}{{other, "an unrelated refusal"}, {tcEnv, `a template named "web" already exists (ID 3): template names are unique`}} {
		if _, err := launcherBus.Event(h.ctx, schemas.EventLauncherFailed, "cmd-7", schemas.Failure{Code: schemas.CodeConflict, Command: tm.Subject,
			Error: c.msg}, bus.CausedBy(c.cause)); err != nil {
			t.Fatal(err)
		}
	}
	h.rec.Wait(t, "image-updated with the template's refusal", func(m *nats.Msg) bool {
		return m.Subject == "slipway.evt.catalog.image-updated."+idToken(img.ID) && strings.Contains(string(m.Data), AttrOVATemplateError)
	})

	h.convert(m0, c0, []byte("qcow2 of disk 0"), schemas.DiskFormatQcow2)
	h.convert(m1, c1, []byte("qcow2 of disk 1"), schemas.DiskFormatQcow2)
	h.waitState(img.ID, StateReady)
	h.waitState(img1.ID, StateReady)
	got := h.mustShow(img.ID)
	if got.Attributes[AttrOVFName] != "web-01" || got.Attributes[AttrOVFOSType] != "debian12_64Guest" || got.Attributes[AttrOVFOSID] != "96" {
		t.Errorf("attributes of image %d: %v", img.ID, got.Attributes)
	}
	// The refusal fails no image, and says what to do; the unrelated one
	// reached no catalog event.
	unrelated := h.rec.All(func(m *nats.Msg) bool {
		return strings.Contains(m.Subject, ".catalog.") && strings.Contains(string(m.Data), "an unrelated refusal")
	})
	if msg := got.Attributes[AttrOVATemplateError]; !strings.Contains(msg, `the launcher refused the VM template "web": a template named "web" already exists (ID 3)`) ||
		!strings.Contains(msg, "the images are imported") || got.Attributes[AttrOVATemplate] != "" || len(unrelated) > 0 {
		t.Errorf("the template's refusal on image %d: %v", img.ID, got.Attributes)
	}
	waitFor(t, "the staged disks to be deleted", func() bool { return !h.exists(disk0) && !h.exists(disk1) })
}

// convertCommand2 waits for the converter command verb of image id.
func (h *harness) convertCommand2(id int64, verb string) (*nats.Msg, schemas.ConverterImport) {
	h.t.Helper()
	m := h.rec.Wait(h.t, "converter "+verb+" of image "+idToken(id), func(m *nats.Msg) bool {
		return m.Subject == "slipway.cmd.converter."+verb+".catalog" && strings.Contains(string(m.Data), `"image_id":`+idToken(id)+`,`)
	})
	var c schemas.ConverterImport
	mustJSON(h.t, m.Data, &c)
	return m, c
}

// TestOVAUnpackFailure: the converter's refusal of the OVA ends the image
// in ERROR with its message; the OVA upload it consumed and anything
// staged are deleted.
func TestOVAUnpackFailure(t *testing.T) {
	h := newHarness(t)
	upload := "s3://" + h.cfg.UploadBucket + "/" + blob.UserStagingPrefix("oneadmin") + "0001/web.ova"
	h.put(upload, []byte("an ova"))
	img := h.create(schemas.ImageCreate{Name: "bad", Path: upload, Staged: true, Ova: true})
	cmd, unpack := h.unpackCommand(img.ID)
	h.put(blob.OVADisk(unpack.Staging, 0), []byte("partial"))
	msg := "invalid OVF package: manifest mismatch for bad-disk1.vmdk: SHA256 expected 00, actual 11"
	h.converterEvent(cmd, "failed", img.ID, schemas.Failure{Code: schemas.CodeInvalidInput, ImageID: &img.ID, Phase: "inspect", Error: msg})
	if ev := h.waitState(img.ID, StateError); ev.Error != "inspect: "+msg {
		t.Fatalf("error = %q", ev.Error)
	}
	waitFor(t, "the upload and the staging to be deleted", func() bool {
		return !h.exists(upload) && !h.exists(blob.OVADisk(unpack.Staging, 0))
	})
}

func TestOVAImportRefusals(t *testing.T) {
	h := newDockerHarness(t)
	for _, tc := range []struct {
		req  schemas.ImageCreate
		want string
	}{
		{schemas.ImageCreate{Name: "a", Path: "docker://nginx", Ova: true}, "not with docker://, rootfs or luks"},
		{schemas.ImageCreate{Name: "b", Ova: true}, "/path is required"},
		{schemas.ImageCreate{Name: "c", Path: "https://x.example/a.ova", Ova: true, Type: schemas.ImageTypeDatablock}, "not DATABLOCK"},
		{schemas.ImageCreate{Name: "d", Path: "https://x.example/a.ova", Ova: true, SourceFormat: schemas.DiskFormatVMDK}, "an OVA is a tar"},
		{schemas.ImageCreate{Name: "e", Path: "https://x.example/a.ova", Ova: true, Rootfs: true}, "ova marks an OVA"},
		{schemas.ImageCreate{Name: "f", Path: "s3://" + h.cfg.Datastores[0].Bucket + "/images/1/x/disk.raw", Ova: true}, "is a datastore bucket"},
		{schemas.ImageCreate{Name: "g", Path: "s3://" + h.cfg.UploadBucket + "/ova/" + testenv.Saga + "/disk0", Staged: true, Ova: true}, "staged path"},
	} {
		h.refused(tc.req, tc.want)
	}
	if imgs := h.list(); len(imgs) != 0 {
		t.Fatalf("refused creates made images: %+v", imgs)
	}
}

// TestOVADiskNameTaken: when the owner already has an image named as a
// further disk's would be, the OVA import ends in ERROR saying so (the
// template would name the wrong disk), and the staged disks are deleted.
func TestOVADiskNameTaken(t *testing.T) {
	h := newHarness(t)
	existing := h.create(schemas.ImageCreate{Name: "app-disk1", Type: schemas.ImageTypeDatablock, SizeMiB: 1})
	img := h.create(schemas.ImageCreate{Name: "app", Path: "https://images.example.org/app.ova", Ova: true})
	cmd, unpack := h.unpackCommand(img.ID)
	disk0, disk1 := blob.OVADisk(unpack.Staging, 0), blob.OVADisk(unpack.Staging, 1)
	h.put(disk0, []byte("vmdk 0"))
	h.put(disk1, []byte("vmdk 1"))
	h.converterEvent(cmd, "ova-unpacked", img.ID, schemas.ConverterOvaUnpacked{ImageID: img.ID,
		Disks: []schemas.OvaDisk{{Staged: disk0, Capacity: 1 << 20, Format: "vmdk"}, {Staged: disk1, Capacity: 1 << 20, Format: "vmdk"}}})
	ev := h.waitState(img.ID, StateError)
	if !strings.Contains(ev.Error, `disk 1 becomes image "app-disk1", but user oneadmin already has an image of that name (ID `+idToken(existing.ID)+`)`) {
		t.Fatalf("error = %q", ev.Error)
	}
	waitFor(t, "the staged disks to be deleted", func() bool { return !h.exists(disk0) && !h.exists(disk1) })
}

// TestRefusedOVADiskIsDeleted: an image-create the catalog sent itself
// for an OVA's disk that it then refuses (here the name was taken
// meanwhile) deletes the staged disk, which nothing else would; a user's
// refused create leaves their upload alone.
func TestRefusedOVADiskIsDeleted(t *testing.T) {
	h := newHarness(t)
	h.create(schemas.ImageCreate{Name: "taken", Type: schemas.ImageTypeDatablock, SizeMiB: 1})
	staged := blob.OVADisk("s3://"+h.cfg.UploadBucket+"/ova/"+testenv.Saga+"/", 1)
	h.put(staged, []byte("vmdk 1"))
	self := h.connect(ServiceName)
	env := testenv.Command(t, h.ctx, self, ServiceName, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "taken", Type: schemas.ImageTypeDatablock, Path: staged, Staged: true, OnBehalfOf: "oneadmin"})
	if _, f := h.waitFailed(env); !strings.Contains(f.Error, `an image named "taken" already exists`) {
		t.Fatalf("failed %+v", f)
	}
	waitFor(t, "the refused disk to be deleted", func() bool { return !h.exists(staged) })

	upload := "s3://" + h.cfg.UploadBucket + "/" + blob.UserStagingPrefix("oneadmin") + "0002/disk.raw"
	h.put(upload, []byte("mine"))
	env = h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "taken", Path: upload, Staged: true})
	h.waitFailed(env)
	if !h.exists(upload) {
		t.Error("a user's refused create deleted their upload")
	}
}
