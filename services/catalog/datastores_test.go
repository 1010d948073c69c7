package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// dsTemplate is a datastore template of the given name, TYPE and bucket,
// plus extra lines.
func dsTemplate(name, typ, bucket string, extra ...string) string {
	return fmt.Sprintf("NAME = %q\nTYPE = %s\nDS_MAD = s3\nBUCKET = %q\n%s\n", name, typ, bucket, strings.Join(extra, "\n"))
}

// createDatastore sends datastore-create as oneadmin.
func (h *harness) createDatastore(template string) (schemas.CatalogDatastore, error) {
	h.t.Helper()
	ev, err := answerFrom[schemas.DatastoreCreated](h, h.cli, schemas.CommandCatalogDatastoreCreate,
		schemas.DatastoreCreate{Template: template}, schemas.EventCatalogDatastoreCreated)
	return ev.Datastore, err
}

// refusedWith checks that err is the catalog's refusal saying says.
func refusedWith(t *testing.T, what string, err error, says string) {
	t.Helper()
	var ce *bus.CallError
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, says) {
		t.Errorf("%s: %v, want a refusal saying %q", what, err, says)
	}
}

// dsShow asks datastore-show.
func (h *harness) dsShow(ref string) (schemas.CatalogDatastore, error) {
	return bus.Ask(h.ctx, h.cli, schemas.QryCatalogDatastoreShow, schemas.CatalogDatastoreShowRequest{Datastore: ref})
}

// TestDatastoreLifeCycle: the configured datastores are 1 (default) and 2
// (files); a created one is 100, has its bucket made, shows its capacity
// from its images' sizes, refuses an image past its LIMIT_MB naming the
// numbers, cannot be deleted while it holds an image, and is gone once
// deleted; the configured ones cannot be deleted at all.
func TestDatastoreLifeCycle(t *testing.T) {
	h := newHarness(t)
	all, err := bus.Ask(h.ctx, h.cli, schemas.QryCatalogDatastores, schemas.CatalogDatastoresRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != 1 || all[0].Name != "default" || all[1].ID != 2 || all[1].Name != "files" ||
		!all[0].Builtin || all[0].DsMad != schemas.DatastoreDriverS3 || all[0].LimitMb != -1 {
		t.Fatalf("configured datastores: %+v", all)
	}

	bucket := "slipway-ds-fast-" + strings.ToLower(h.cfg.UploadBucket[len("uploads-"):])
	fast, err := h.createDatastore(dsTemplate("fast", "IMAGE_DS", bucket, "LIMIT_MB = 100"))
	if err != nil {
		t.Fatal(err)
	}
	if fast.ID != 100 || fast.Kind != KindImage || fast.Bucket != bucket || fast.LimitMb != 100 || fast.Builtin ||
		!slices.Equal(fast.Types, imageTypes(KindImage)) {
		t.Fatalf("created datastore: %+v", fast)
	}
	// The catalog made the bucket: an object can be written there.
	h.put("s3://"+bucket+"/probe", []byte("x"))
	if !h.exists("s3://" + bucket + "/probe") {
		t.Fatalf("bucket %s was not created", bucket)
	}
	_, err = h.createDatastore(dsTemplate("fast", "IMAGE_DS", bucket+"-2"))
	refusedWith(t, "a second datastore fast", err, `datastore "fast" exists already (ID 100)`)
	_, err = h.createDatastore(dsTemplate("other", "IMAGE_DS", bucket))
	refusedWith(t, "a second datastore on the same bucket", err, `bucket `+bucket+` is datastore "fast"'s already (ID 100)`)

	// Capacity: 60 of 100 MB taken, another 60 do not fit.
	img, err := answerFrom[schemas.Image](h, h.cli, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "sixty", SizeMiB: 60, Datastore: "fast"}, schemas.EventCatalogImageCreated)
	if err != nil {
		t.Fatal(err)
	}
	if img.Datastore != "fast" {
		t.Fatalf("image in %q, want fast", img.Datastore)
	}
	_, err = answerFrom[schemas.Image](h, h.cli, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "sixty-more", SizeMiB: 60, Datastore: "fast"}, schemas.EventCatalogImageCreated)
	mustExceed(t, "60 MB more in a 100 MB datastore with 60 used", err,
		"datastore fast is full: its capacity is 100 MB (LIMIT_MB), its images take 60 MB and this one needs 60 MB (40 MB free)")
	// The limit binds oneadmin (who has no quota) as anyone.
	for _, ref := range []string{"100", "fast"} {
		ds, err := h.dsShow(ref)
		if err != nil {
			t.Fatalf("show %s: %v", ref, err)
		}
		if ds.ID != 100 || ds.UsedMb != 60 || ds.FreeMb != 40 || !slices.Equal(ds.Images, []int64{img.ID}) {
			t.Errorf("show %s: %+v, want 60 MB used, 40 free, image %d", ref, ds, img.ID)
		}
	}
	if _, err := h.dsShow("nowhere"); !bus.IsNotFound(err) {
		t.Errorf("show of a missing datastore: %v, want not-found", err)
	}
	// A disk type in a file datastore, a file type in an image one.
	files, err := h.createDatastore(dsTemplate("ctx", "FILE_DS", bucket+"-files"))
	if err != nil || files.ID != 101 || files.Kind != KindFile || files.LimitMb != -1 {
		t.Fatalf("FILE_DS: %+v %v", files, err)
	}
	_, err = answerFrom[schemas.Image](h, h.cli, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "disk", SizeMiB: 1, Datastore: "ctx"}, schemas.EventCatalogImageCreated)
	refusedWith(t, "a DATABLOCK in a FILE_DS", err, `type DATABLOCK is a disk type: it belongs in an image datastore (such as "default"), not in file datastore "ctx"`)

	// Deleting.
	err = h.as(h.cli, schemas.CommandCatalogDatastoreDelete, schemas.DatastoreDelete{Datastore: "fast"}, schemas.EventCatalogDatastoreDeleted)
	refusedWith(t, "delete of a datastore with an image", err, fmt.Sprintf("datastore 100 has 1 images: %d; delete them first", img.ID))
	for _, ref := range []string{"1", "default", "files"} {
		err = h.as(h.cli, schemas.CommandCatalogDatastoreDelete, schemas.DatastoreDelete{Datastore: ref}, schemas.EventCatalogDatastoreDeleted)
		refusedWith(t, "delete of configured datastore "+ref, err, "is one of the catalog's configured datastores: it cannot be deleted")
	}
	if err := h.as(h.cli, schemas.CommandCatalogDatastoreDelete, schemas.DatastoreDelete{Datastore: "101"}, schemas.EventCatalogDatastoreDeleted); err != nil {
		t.Fatalf("delete of the empty datastore 101: %v", err)
	}
	all, err = bus.Ask(h.ctx, h.cli, schemas.QryCatalogDatastores, schemas.CatalogDatastoresRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range all {
		names = append(names, fmt.Sprintf("%d:%s:%d", d.ID, d.Name, d.UsedMb))
	}
	if want := []string{"1:default:0", "2:files:0", "100:fast:60"}; !slices.Equal(names, want) {
		t.Errorf("datastores after the delete: %v, want %v", names, want)
	}
	// Created datastores outlive the catalog.
	h.stop()
	h.start()
	if ds, err := h.dsShow("fast"); err != nil || ds.ID != 100 || ds.LimitMb != 100 {
		t.Errorf("fast after a restart: %+v %v", ds, err)
	}
	if ds, err := h.createDatastore(dsTemplate("again", "IMAGE_DS", bucket+"-again")); err != nil || ds.ID != 101 {
		t.Errorf("the next datastore after a restart: %+v %v, want ID 101", ds, err)
	}
}

// TestDatastoreTemplateRefusals: each rule of a datastore template, with
// its message; nothing is recorded for any of them.
func TestDatastoreTemplateRefusals(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct{ template, says string }{
		{"NAME = x\nTYPE = IMAGE_DS\nDS_MAD = s3\n", "BUCKET is missing: name the bucket, slipway-ds-<name>"},
		{dsTemplate("x", "IMAGE_DS", "my-bucket"), `BUCKET "my-bucket" must start with "slipway-ds-": the services' S3 policies cover slipway-ds-* and nothing else`},
		{dsTemplate("x", "IMAGE_DS", "slipway-uploads"), `must start with "slipway-ds-"`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-"), `BUCKET "slipway-ds-" is not a valid S3 bucket name`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-Upper"), `BUCKET "slipway-ds-Upper" is not a valid S3 bucket name`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-a..b"), `is not a valid S3 bucket name`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-"+strings.Repeat("a", 60)), `is not a valid S3 bucket name`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x/../../etc"), `is not a valid S3 bucket name`},
		{dsTemplate("x", "SYSTEM_DS", "slipway-ds-x"), "TYPE SYSTEM_DS: the launcher keeps running VMs' disks on its own host"},
		{dsTemplate("x", "BACKUP_DS", "slipway-ds-x"), `TYPE "BACKUP_DS": want IMAGE_DS or FILE_DS`},
		{strings.Replace(dsTemplate("x", "IMAGE_DS", "slipway-ds-x"), "DS_MAD = s3", "DS_MAD = fs", 1), `DS_MAD "fs": the only driver is s3`},
		{strings.Replace(dsTemplate("x", "IMAGE_DS", "slipway-ds-x"), "DS_MAD = s3", "", 1), `DS_MAD "": the only driver is s3`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x", "TM_MAD = ssh"), `TM_MAD "ssh": the only driver is s3`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x", "SECRET_KEY = abc"), "attribute SECRET_KEY is not one a datastore takes"},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x", "ENDPOINT = \"http://203.0.113.9:9000\""), `ENDPOINT "http://203.0.113.9:9000" is not the catalog's own S3 (` + s3.Endpoint + `): a datastore elsewhere names its S3 remote with CREDENTIALS (none are configured)`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x", "CREDENTIALS = \"AKIA:secret\""), `CREDENTIALS is not the name of an S3 remote`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x", "CREDENTIALS = \"archive\""), `CREDENTIALS "archive": no such S3 remote "archive": the services have none configured (SLIPWAY_S3_REMOTES)`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x", "LIMIT_MB = -5"), `LIMIT_MB "-5": want a positive number of MB`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x", "LIMIT_MB = 0"), `LIMIT_MB "0": want a positive number of MB`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x", "LIMIT_MB = 10", "QUOTA = 20"), `LIMIT_MB "10" and QUOTA "20" differ`},
		{dsTemplate("123", "IMAGE_DS", "slipway-ds-x"), `NAME "123": want 1-63 lower-case letters`},
		{dsTemplate("Fast", "IMAGE_DS", "slipway-ds-x"), `NAME "Fast": want`},
		{dsTemplate("default", "IMAGE_DS", "slipway-ds-x"), `datastore "default" exists already (ID 1)`},
		{dsTemplate("x", "IMAGE_DS", h.cfg.Datastores[0].Bucket), `must start with "slipway-ds-"`},
		{"NAME = [ A = b ]", "attribute NAME is not one a datastore takes"},
		{"NAME = \"unterminated", "datastore template:"},
	} {
		_, err := h.createDatastore(c.template)
		refusedWith(t, fmt.Sprintf("template %q", c.template), err, c.says)
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("template %q: the refusal repeats the key pasted in CREDENTIALS: %v", c.template, err)
		}
	}
	all, err := bus.Ask(h.ctx, h.cli, schemas.QryCatalogDatastores, schemas.CatalogDatastoresRequest{})
	if err != nil || len(all) != 2 {
		t.Errorf("datastores after the refusals: %+v %v, want the 2 configured", all, err)
	}
	// The catalog's own endpoint, named, and the default credentials pass.
	ds, err := h.createDatastore(dsTemplate("own", "IMAGE_DS", "slipway-ds-own-"+strings.ToLower(h.cfg.UploadBucket[len("uploads-"):]),
		fmt.Sprintf("ENDPOINT = %q", s3.BlobConfig().Endpoint), `CREDENTIALS = "default"`, "QUOTA = 5"))
	if err != nil || ds.LimitMb != 5 || ds.Credentials != "default" {
		t.Errorf("a datastore on the catalog's own endpoint: %+v %v", ds, err)
	}
}

// TestDatastoreOnlyAdministrators: a user can list and show datastores
// but neither create nor delete one: the server refuses the publish.
func TestDatastoreOnlyAdministrators(t *testing.T) {
	h := newHarness(t)
	alice := h.newUser("alice", "")
	for _, c := range []struct {
		verb string
		data any
	}{
		{schemas.CommandCatalogDatastoreCreate, schemas.DatastoreCreate{Template: dsTemplate("mine", "IMAGE_DS", "slipway-ds-mine")}},
		{schemas.CommandCatalogDatastoreDelete, schemas.DatastoreDelete{Datastore: "files"}},
	} {
		short, cancel := context.WithTimeout(h.ctx, 2*time.Second)
		if _, err := alice.Command(short, ServiceName, c.verb, c.data); err == nil {
			t.Errorf("the server took alice's %s", c.verb)
		}
		cancel()
	}
	// The catalog's own check, behind the server's: a user's command is
	// refused by maySend (the schema grants it to admins only).
	c, err := h.svc.identify(h.ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{schemas.CommandCatalogDatastoreCreate, schemas.CommandCatalogDatastoreDelete} {
		if err := c.maySend(verb); err == nil || !strings.Contains(err.Error(), "user alice may not send "+verb+": it is for administrators") {
			t.Errorf("maySend %s for alice: %v", verb, err)
		}
	}
	all, err := bus.Ask(h.ctx, alice, schemas.QryCatalogDatastores, schemas.CatalogDatastoresRequest{})
	if err != nil || len(all) != 2 {
		t.Errorf("alice's datastore list: %+v %v", all, err)
	}
	if ds, err := bus.Ask(h.ctx, alice, schemas.QryCatalogDatastoreShow, schemas.CatalogDatastoreShowRequest{Datastore: "2"}); err != nil || ds.Name != "files" {
		t.Errorf("alice's datastore show 2: %+v %v", ds, err)
	}
}

// TestDatastoreDeleteRace: a delete marks the datastore before it looks
// for images, and an image's creation looks for the mark once its record
// is written: an image created while the mark is there is taken back
// (refused, no record, its name free); another delete is refused while
// the mark is there, and the command that left it, delivered again, goes
// through; a datastore created again under the name starts clean.
func TestDatastoreDeleteRace(t *testing.T) {
	h := newHarness(t)
	bucket := "slipway-ds-race-" + strings.ToLower(h.cfg.UploadBucket[len("uploads-"):])
	if _, err := h.createDatastore(dsTemplate("race", "IMAGE_DS", bucket)); err != nil {
		t.Fatal(err)
	}
	// A delete stopped between its mark and its look for images.
	if _, err := h.svc.meta.Create(h.ctx, keyDatastoreDeletingPrefix+"race", []byte("the-delete")); err != nil {
		t.Fatal(err)
	}
	_, err := answerFrom[schemas.Image](h, h.cli, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "late", SizeMiB: 1, Datastore: "race"}, schemas.EventCatalogImageCreated)
	refusedWith(t, "an image created while the datastore is being deleted", err, `datastore "race" is being deleted`)
	imgs, err := bus.Ask(h.ctx, h.cli, schemas.QryCatalogList, schemas.CatalogListRequest{Datastore: "race"})
	if err != nil || len(imgs) != 0 {
		t.Errorf("images in race after the refusal: %+v %v", imgs, err)
	}
	// Another delete command is refused while the mark is someone else's.
	err = h.as(h.cli, schemas.CommandCatalogDatastoreDelete, schemas.DatastoreDelete{Datastore: "race"}, schemas.EventCatalogDatastoreDeleted)
	refusedWith(t, "a second delete", err, "datastore 100 (race) is being deleted by another command")
	// The command that left the mark, delivered again, finds its own mark
	// and goes through.
	redelivered := &bus.Msg{Envelope: envelope.Envelope{ID: "the-delete"}}
	if err := h.svc.datastoreDelete(h.ctx, redelivered, schemas.DatastoreDelete{Datastore: "race"}); err != nil {
		t.Fatalf("the redelivered delete: %v", err)
	}
	// The name is free again, the image name too, and no mark is left.
	if _, err := h.createDatastore(dsTemplate("race", "IMAGE_DS", bucket)); err != nil {
		t.Fatalf("race again: %v", err)
	}
	if _, err := h.svc.meta.Get(h.ctx, keyDatastoreDeletingPrefix+"race"); err == nil {
		t.Error("a deleting mark is left")
	}
	if _, err := answerFrom[schemas.Image](h, h.cli, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "late", SizeMiB: 1, Datastore: "race"}, schemas.EventCatalogImageCreated); err != nil {
		t.Errorf("the refused image's name in the new race: %v", err)
	}
}

// TestDatastoreCapacityAtCommit: an import's size is known once
// converted. The converter is told what the datastore's capacity leaves;
// an import bigger than that (a converter that did not look) ends ERROR at
// commit naming the capacity, its blob deleted; one the converter refused
// for the limit says which capacity set it.
func TestDatastoreCapacityAtCommit(t *testing.T) {
	h := newHarness(t)
	bucket := "slipway-ds-small-" + strings.ToLower(h.cfg.UploadBucket[len("uploads-"):])
	if _, err := h.createDatastore(dsTemplate("small", "IMAGE_DS", bucket, "LIMIT_MB = 10")); err != nil {
		t.Fatal(err)
	}
	staged := "s3://" + h.cfg.UploadBucket + "/uploads/oneadmin/d1/disk.raw"
	h.put(staged, []byte("a disk"))
	img, err := answerFrom[schemas.Image](h, h.cli, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "big", Path: staged, Staged: true, Datastore: "small"}, schemas.EventCatalogImageCreated)
	if err != nil {
		t.Fatal(err)
	}
	cmd, c := h.convertCommand(img.ID)
	if c.MaxVirtualSize != 10<<20 || !strings.HasPrefix(c.Dest, "s3://"+bucket+"/images/") {
		t.Errorf("converter command: max %d dest %s, want 10 MiB into %s", c.MaxVirtualSize, c.Dest, bucket)
	}
	data := []byte("twenty MB once inflated")
	h.put(c.Dest, data)
	info, err := h.blobs.Stat(h.ctx, bucket, strings.TrimPrefix(c.Dest, "s3://"+bucket+"/"))
	if err != nil {
		t.Fatal(err)
	}
	h.converterEvent(cmd, "converted", img.ID, schemas.ConverterConverted{ImageID: img.ID, Dest: c.Dest, Format: schemas.DiskFormatRaw,
		VirtualSize: 20 << 20, Size: info.Size, SHA256: sha(data), DetectedFormat: schemas.DiskFormatRaw})
	ev := h.waitState(img.ID, StateError)
	if want := "datastore small is full: its capacity is 10 MB (LIMIT_MB), its images take 0 MB and this one needs 20 MB (10 MB free)"; !strings.Contains(ev.Error, want) {
		t.Errorf("the import too big for the datastore ended with %q, want %q", ev.Error, want)
	}
	if !testenv.Eventually(10*time.Second, 50*time.Millisecond, func() bool { return !h.exists(c.Dest) }) {
		t.Errorf("the blob of the refused import is still at %s", c.Dest)
	}

	h.put(staged, []byte("a disk"))
	huge, err := answerFrom[schemas.Image](h, h.cli, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "huge", Path: staged, Staged: true, Datastore: "small"}, schemas.EventCatalogImageCreated)
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ = h.convertCommand(huge.ID)
	h.converterEvent(cmd, "failed", huge.ID, schemas.Failure{Code: schemas.CodeInvalidInput, ImageID: &huge.ID,
		Phase: string(schemas.ConverterPhaseInspect), Error: "raw: virtual size 50.0 MiB exceeds 10.0 MiB"})
	ev = h.waitState(huge.ID, StateError)
	if want := "the import was limited to a virtual size of 10 MB by datastore small's capacity of 10 MB (LIMIT_MB)"; !strings.Contains(ev.Error, want) {
		t.Errorf("the import the converter refused ended with %q, want %q", ev.Error, want)
	}
}

// dsAdmin sends a datastore chmod or chown as oneadmin and returns the
// datastore it answers.
func (h *harness) dsAdmin(verb string, data any) (schemas.CatalogDatastore, error) {
	h.t.Helper()
	ev, err := answerFrom[schemas.DatastoreUpdated](h, h.cli, verb, data, schemas.EventCatalogDatastoreUpdated)
	return ev.Datastore, err
}

// TestDatastorePermissions: a user needs use on a datastore to create an
// image in it (OpenNebula's USE). The configured datastores are 644
// (everyone), a created one 600 (its owner, oneadmin, and the oneadmin
// group) until chmod; chown gives it to a user or group that exists; a
// configured datastore's bits outlive a restart.
func TestDatastorePermissions(t *testing.T) {
	h := newHarness(t)
	alice := h.newUser("alice", "")
	bob := h.newUser("bob", "")
	bucket := "slipway-ds-team-" + strings.ToLower(h.cfg.UploadBucket[len("uploads-"):])
	team, err := h.createDatastore(dsTemplate("team", "IMAGE_DS", bucket))
	if err != nil {
		t.Fatal(err)
	}
	if team.User != "oneadmin" || team.Group != "oneadmin" || team.Permissions != "600" {
		t.Errorf("a new datastore: owner %s group %s bits %s, want oneadmin oneadmin 600", team.User, team.Group, team.Permissions)
	}
	if def, err := h.dsShow("default"); err != nil || def.Permissions != "644" || def.User != "oneadmin" {
		t.Errorf("default: %+v %v, want oneadmin's, 644", def, err)
	}
	blank := func(b *bus.Bus, name, ds string) error {
		_, err := answerFrom[schemas.Image](h, b, schemas.CommandCatalogImageCreate,
			schemas.ImageCreate{Name: name, SizeMiB: 1, Datastore: ds}, schemas.EventCatalogImageCreated)
		return err
	}
	mustBeForbidden(t, "alice's image in team (600)", blank(alice, "a1", "team"),
		"create an image in: user alice may not use datastore 100 (owner oneadmin, group oneadmin, permissions um-------)")
	if err := blank(alice, "a1", "default"); err != nil {
		t.Errorf("alice's image in default (644): %v", err)
	}
	if err := blank(h.cli, "o1", "team"); err != nil {
		t.Errorf("oneadmin's image in team: %v", err)
	}

	if ds, err := h.dsAdmin(schemas.CommandCatalogDatastoreChmod, schemas.DatastoreChmod{Datastore: "team", Permissions: "604"}); err != nil || ds.Permissions != "604" {
		t.Fatalf("chmod team 604: %+v %v", ds, err)
	}
	if err := blank(alice, "a2", "team"); err != nil {
		t.Errorf("alice's image in team (604): %v", err)
	}
	if ds, err := h.dsAdmin(schemas.CommandCatalogDatastoreChown, schemas.DatastoreChown{Datastore: "100", User: "alice"}); err != nil || ds.User != "alice" || ds.Group != "oneadmin" {
		t.Fatalf("chown team alice: %+v %v", ds, err)
	}
	if _, err := h.dsAdmin(schemas.CommandCatalogDatastoreChmod, schemas.DatastoreChmod{Datastore: "team", Permissions: "600"}); err != nil {
		t.Fatal(err)
	}
	if err := blank(alice, "a3", "team"); err != nil {
		t.Errorf("alice's image in her own team (600): %v", err)
	}
	mustBeForbidden(t, "bob's image in alice's team (600)", blank(bob, "b1", "team"), "user bob may not use datastore 100 (owner alice")
	_, err = h.dsAdmin(schemas.CommandCatalogDatastoreChown, schemas.DatastoreChown{Datastore: "team", User: "nobody"})
	refusedWith(t, "chown to a missing user", err, `user "nobody" does not exist`)
	_, err = h.dsAdmin(schemas.CommandCatalogDatastoreChown, schemas.DatastoreChown{Datastore: "team", Group: "nogroup"})
	refusedWith(t, "chgrp to a missing group", err, `group "nogroup" does not exist`)
	_, err = h.dsAdmin(schemas.CommandCatalogDatastoreChmod, schemas.DatastoreChmod{Datastore: "nowhere", Permissions: "644"})
	refusedWith(t, "chmod of a missing datastore", err, `datastore "nowhere" does not exist`)

	// A configured datastore's bits are kept in its record: they outlive
	// the catalog's restart, which rewrites the rest from the configuration.
	if ds, err := h.dsAdmin(schemas.CommandCatalogDatastoreChmod, schemas.DatastoreChmod{Datastore: "1", Permissions: "640"}); err != nil || ds.Permissions != "640" || ds.Bucket != h.cfg.Datastores[0].Bucket {
		t.Fatalf("chmod default 640: %+v %v", ds, err)
	}
	h.stop()
	h.start()
	if def, err := h.dsShow("default"); err != nil || def.Permissions != "640" || !def.Builtin {
		t.Errorf("default after a restart: %+v %v, want 640", def, err)
	}
	mustBeForbidden(t, "bob's image in default (640, group oneadmin)", blank(bob, "b2", "default"), "user bob may not use datastore 1")
	// alice and bob may not change a datastore's bits: the server refuses.
	short, cancel := context.WithTimeout(h.ctx, 2*time.Second)
	defer cancel()
	if _, err := alice.Command(short, ServiceName, schemas.CommandCatalogDatastoreChmod, schemas.DatastoreChmod{Datastore: "team", Permissions: "666"}); err == nil {
		t.Error("the server took alice's datastore-chmod")
	}
}

// TestDatastoreCreateRace: creations handled at once (eight at a time)
// never share a bucket, a name or an ID: of six creations of one bucket
// under six names one wins, as does one of six of one name on six
// buckets, and every loser's claims are given back.
func TestDatastoreCreateRace(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Concurrency = 8 })
	sfx := strings.ToLower(h.cfg.UploadBucket[len("uploads-"):])
	race := func(tmpl func(i int) string) (won []schemas.CatalogDatastore, lost []error) {
		var (
			mu sync.Mutex
			wg sync.WaitGroup
		)
		for i := range 6 {
			wg.Go(func() {
				ev, err := answerFrom[schemas.DatastoreCreated](h, h.cli, schemas.CommandCatalogDatastoreCreate,
					schemas.DatastoreCreate{Template: tmpl(i)}, schemas.EventCatalogDatastoreCreated)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					lost = append(lost, err)
				} else {
					won = append(won, ev.Datastore)
				}
			})
		}
		wg.Wait()
		return won, lost
	}
	won, lost := race(func(i int) string { return dsTemplate(fmt.Sprintf("b%d", i), "IMAGE_DS", "slipway-ds-shared-"+sfx) })
	if len(won) != 1 || len(lost) != 5 {
		t.Fatalf("one bucket, six names: %d won (%+v), %d lost (%v)", len(won), won, len(lost), lost)
	}
	for _, err := range lost {
		refusedWith(t, "a loser of the bucket race", err, "bucket slipway-ds-shared-"+sfx+" is datastore ")
	}
	won2, lost2 := race(func(i int) string { return dsTemplate("same", "IMAGE_DS", fmt.Sprintf("slipway-ds-same%d-%s", i, sfx)) })
	if len(won2) != 1 || len(lost2) != 5 || won2[0].ID == won[0].ID {
		t.Fatalf("one name, six buckets: %+v won, %v lost", won2, lost2)
	}
	for _, err := range lost2 {
		refusedWith(t, "a loser of the name race", err, `datastore "same" exists already`)
	}
	// The losers' claims are gone: their buckets and the next ID are free.
	keys, err := h.svc.meta.ListKeysFiltered(h.ctx, keyDatastoreIDPrefix+"*", keyDatastoreBucketPrefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	var claims []string
	for k := range keys.Keys() {
		claims = append(claims, k)
	}
	slices.Sort(claims)
	want := []string{keyDatastoreBucketPrefix + won2[0].Bucket, keyDatastoreBucketPrefix + "slipway-ds-shared-" + sfx,
		fmt.Sprintf("%s%d", keyDatastoreIDPrefix, won[0].ID), fmt.Sprintf("%s%d", keyDatastoreIDPrefix, won2[0].ID)}
	slices.Sort(want)
	if !slices.Equal(claims, want) {
		t.Errorf("claims left: %v, want %v", claims, want)
	}
	loser := fmt.Sprintf("slipway-ds-same0-%s", sfx)
	if loser == won2[0].Bucket {
		loser = fmt.Sprintf("slipway-ds-same1-%s", sfx)
	}
	if _, err := h.createDatastore(dsTemplate("after", "IMAGE_DS", loser)); err != nil {
		t.Errorf("a bucket a loser had claimed: %v", err)
	}
}

// withRemotes restarts h's catalog with a store that also reaches the
// S3 remotes "archive" (a second, real MinIO, holding slipway-ds-arc-*)
// and "gone" (an endpoint where nothing listens, holding
// slipway-ds-gone-*), and returns the archive's MinIO.
func withRemotes(t *testing.T, h *harness) testenv.S3 {
	t.Helper()
	far := testenv.MinIO(t)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	keys := blob.Keys{AccessKey: far.AccessKey, SecretKey: far.SecretKey}
	cfg := s3.BlobConfig()
	cfg.Remotes = []blob.Remote{
		{Name: "archive", Endpoint: "http://" + far.Endpoint, Region: "us-east-1", Keys: keys, Buckets: []string{"slipway-ds-arc-*"}},
		{Name: "gone", Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Keys: keys, Buckets: []string{"slipway-ds-gone-*"}},
	}
	if h.blobs, err = blob.New(cfg); err != nil {
		t.Fatal(err)
	}
	h.stop()
	h.start()
	return far
}

// TestDatastoreOnRemote: a datastore on an S3 remote is created from
// CREDENTIALS (its endpoint taken from the remote, or named), its bucket
// made there and nowhere else; the templates that disagree with the
// remotes' configuration are refused with what is wrong; a remote that is
// down refuses the creation and the catalog keeps serving; deleting an
// empty datastore removes the bucket the catalog made, and keeps one
// holding objects.
func TestDatastoreOnRemote(t *testing.T) {
	h := newHarness(t)
	far := withRemotes(t, h)
	farStore, err := blob.New(far.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	u := strings.ToLower(testenv.Unique())
	arc := "slipway-ds-arc-" + u
	for _, c := range []struct{ template, says string }{
		{dsTemplate("x", "IMAGE_DS", arc), `BUCKET "` + arc + `" lives on S3 remote "archive" (http://` + far.Endpoint + ` holds slipway-ds-arc-*): give CREDENTIALS = "archive"`},
		{dsTemplate("x", "IMAGE_DS", arc, `CREDENTIALS = "nowhere"`), `CREDENTIALS "nowhere": no such S3 remote "nowhere" (remotes: archive, gone)`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-other-"+u, `CREDENTIALS = "archive"`), `BUCKET "slipway-ds-other-` + u + `" is not one of S3 remote "archive"'s buckets (slipway-ds-arc-*)`},
		{dsTemplate("x", "IMAGE_DS", arc, `CREDENTIALS = "archive"`, fmt.Sprintf("ENDPOINT = %q", s3.Endpoint)), `ENDPOINT "` + s3.Endpoint + `" is not S3 remote "archive"'s endpoint (http://` + far.Endpoint + `)`},
		{dsTemplate("x", "IMAGE_DS", "slipway-ds-x", "ENDPOINT = \"http://"+far.Endpoint+"\""), `is not the catalog's own S3 (` + s3.Endpoint + `): a datastore elsewhere names its S3 remote with CREDENTIALS (remotes: archive, gone)`},
	} {
		_, err := h.createDatastore(c.template)
		refusedWith(t, fmt.Sprintf("template %q", c.template), err, c.says)
	}
	if ok, err := farStore.Client().BucketExists(h.ctx, arc); err != nil || ok {
		t.Fatalf("a refused template made bucket %s: %v %v", arc, ok, err)
	}

	ds, err := h.createDatastore(dsTemplate("arc", "IMAGE_DS", arc, `CREDENTIALS = "archive"`, "ENDPOINT = \"http://"+far.Endpoint+"\"", "LIMIT_MB = 50"))
	if err != nil {
		t.Fatal(err)
	}
	if ds.Credentials != "archive" || ds.Endpoint != "http://"+far.Endpoint || ds.Bucket != arc || ds.LimitMb != 50 {
		t.Fatalf("datastore on the remote: %+v", ds)
	}
	if ok, err := farStore.Client().BucketExists(h.ctx, arc); err != nil || !ok {
		t.Fatalf("bucket %s on the remote: %v %v", arc, ok, err)
	}
	if ok, err := h.blobs.Client().BucketExists(h.ctx, arc); err != nil || ok {
		t.Fatalf("bucket %s on the default server: %v %v", arc, ok, err)
	}
	// ENDPOINT may be left out: it is the remote's.
	ds2, err := h.createDatastore(dsTemplate("arc2", "FILE_DS", arc+"-2", `CREDENTIALS = "archive"`))
	if err != nil || ds2.Endpoint != "http://"+far.Endpoint {
		t.Fatalf("datastore without ENDPOINT: %+v %v", ds2, err)
	}
	// Capacity counts as on any datastore.
	img, err := answerFrom[schemas.Image](h, h.cli, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "twenty", SizeMiB: 20, Datastore: "arc"}, schemas.EventCatalogImageCreated)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := h.dsShow("arc"); err != nil || got.UsedMb != 20 || got.FreeMb != 30 || !slices.Equal(got.Images, []int64{img.ID}) {
		t.Errorf("show arc: %+v %v, want 20 MB used, 30 free", got, err)
	}

	// A remote that is down: refused, naming it, and the catalog serves on.
	_, err = h.createDatastore(dsTemplate("gone", "IMAGE_DS", "slipway-ds-gone-"+u, `CREDENTIALS = "gone"`))
	refusedWith(t, "a datastore on a remote that is down", err, `S3 remote "gone" (http://127.0.0.1:`)
	if _, err := h.dsShow("gone"); !bus.IsNotFound(err) {
		t.Errorf("show of the refused datastore: %v, want not-found", err)
	}

	// Delete: arc2 is empty, its bucket goes; a bucket holding an object
	// (not written by Slipway) stays.
	if err := h.as(h.cli, schemas.CommandCatalogDatastoreDelete, schemas.DatastoreDelete{Datastore: "arc2"}, schemas.EventCatalogDatastoreDeleted); err != nil {
		t.Fatal(err)
	}
	if ok, err := farStore.Client().BucketExists(h.ctx, arc+"-2"); err != nil || ok {
		t.Errorf("bucket of the deleted empty datastore arc2: exists %v %v", ok, err)
	}
	ds3, err := h.createDatastore(dsTemplate("arc3", "IMAGE_DS", arc+"-3", `CREDENTIALS = "archive"`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := farStore.Put(h.ctx, ds3.Bucket, "operator/notes.txt", strings.NewReader("mine"), 4); err != nil {
		t.Fatal(err)
	}
	if err := h.as(h.cli, schemas.CommandCatalogDatastoreDelete, schemas.DatastoreDelete{Datastore: "arc3"}, schemas.EventCatalogDatastoreDeleted); err != nil {
		t.Fatal(err)
	}
	if _, err := farStore.Stat(h.ctx, ds3.Bucket, "operator/notes.txt"); err != nil {
		t.Errorf("the operator's object in the deleted datastore's bucket: %v", err)
	}
	err = h.as(h.cli, schemas.CommandCatalogDatastoreDelete, schemas.DatastoreDelete{Datastore: "arc"}, schemas.EventCatalogDatastoreDeleted)
	refusedWith(t, "delete of a remote datastore with an image", err, fmt.Sprintf("datastore %d has 1 images: %d; delete them first", ds.ID, img.ID))
}
