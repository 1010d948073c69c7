package catalog

import (
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestStagedSweepDeletesOnlyOrphans: with an expiry of 3 s, the catalog's
// own sweep loop deletes what lies in users' staging areas (uploads/ and
// kernels/) once older than the expiry; an upload an import in progress
// reads (staged or not) stays until that import is over; a fresh upload
// stays; nothing outside a user's staging area is touched, in the upload
// bucket or any other.
func TestStagedSweepDeletesOnlyOrphans(t *testing.T) {
	const expiry = 3 * time.Second
	h := newHarness(t, func(c *Config) { c.UploadExpiry = expiry })
	up := func(key string) string { return blob.URL(h.cfg.UploadBucket, key) }
	orphans := []string{
		up("uploads/oneadmin/o1/disk.raw"),
		up("kernels/oneadmin/k1/linux-image.deb"),
		up("uploads/oneadmin/a/b/c"), // in oneadmin's area, though no import could take it
	}
	staged, unstaged := up("uploads/oneadmin/r1/disk.raw"), up("uploads/oneadmin/r2/disk.raw")
	outside := []string{
		up("builds/7/" + testenv.Saga + "/disk.raw"),
		up("ova/" + testenv.Saga + "/disk0"),
		up("vms/7/disk-0.qcow2"),
		up("kernel-registry/0b7a/vmlinuz"),
		up("kernels/5/vmlinux"),
		up("uploads/README"),
		up("uploads/Oneadmin/x/disk.raw"),
		up("uploadsx/oneadmin/x/disk.raw"),
		up("other/uploads/oneadmin/x/disk.raw"),
		blob.URL(h.cfg.Datastores[0].Bucket, "uploads/oneadmin/x/disk.raw"),
	}
	for _, u := range append(append(append([]string{}, orphans...), outside...), staged, unstaged) {
		h.put(u, []byte("bytes of "+u))
	}
	held := h.create(schemas.ImageCreate{Name: "held", Path: staged, Staged: true, Format: schemas.DiskFormatRaw})
	heldUnstaged := h.create(schemas.ImageCreate{Name: "held-unstaged", Path: unstaged, Format: schemas.DiskFormatRaw})

	waitFor(t, "the sweep to delete the orphans", func() bool {
		for _, u := range orphans {
			if h.exists(u) {
				return false
			}
		}
		return true
	})
	fresh := up("uploads/oneadmin/f1/disk.raw")
	h.put(fresh, []byte("just uploaded"))
	if err := h.svc.sweepStaged(h.ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range append(append([]string{}, outside...), staged, unstaged, fresh) {
		if !h.exists(u) {
			t.Errorf("the sweep deleted %s", u)
		}
	}

	// Once the imports are over, the staged upload is the import's to
	// delete and the other one an orphan like any.
	h.finish(held)
	h.finish(heldUnstaged)
	waitFor(t, "the imported uploads to be deleted", func() bool { return !h.exists(staged) && !h.exists(unstaged) })
	for _, u := range outside {
		if !h.exists(u) {
			t.Errorf("the sweep deleted %s", u)
		}
	}
}

// TestRefusedCreateKeepsTheUpload: an image-create refused before
// anything was sent (the name taken, checked first; the IMAGES quota,
// checked once the saga has started) keeps the user's upload for another
// create and says so; that create imports it. A create naming another
// user's upload is refused without a word about keeping it.
func TestRefusedCreateKeepsTheUpload(t *testing.T) {
	h := newHarness(t)
	carol := h.newUser("carol", "")
	bob := h.newUser("bob", "")
	staged := blob.URL(h.cfg.UploadBucket, blob.UserStagingPrefix("carol")+"c1/disk.raw")
	data := []byte("carol's disk")
	h.put(staged, data)
	create := func(b *bus.Bus, name string) error {
		_, err := answerFrom[schemas.Image](h, b, schemas.CommandCatalogImageCreate,
			schemas.ImageCreate{Name: name, Path: staged, Staged: true, Format: schemas.DiskFormatRaw}, schemas.EventCatalogImageCreated)
		return err
	}
	if _, err := h.blankAs(carol, "taken", 1); err != nil {
		t.Fatal(err)
	}
	h.setQuota("user", "carol", ptr(1), nil)
	for _, name := range []string{"taken", "over-quota"} {
		err := create(carol, name)
		if err == nil || !strings.Contains(err.Error(), "the upload "+staged+" is kept") {
			t.Errorf("create %q: %v, want a refusal saying the upload is kept", name, err)
		}
		if !h.exists(staged) {
			t.Fatalf("the refused create %q deleted the upload", name)
		}
	}
	mustExceed(t, "create over quota", create(carol, "over-quota"), "quota IMAGES 1 reached")

	if err := create(bob, "stolen"); err == nil || strings.Contains(err.Error(), "kept") || !h.exists(staged) {
		t.Errorf("bob's create of carol's upload: %v (upload there: %v), want a refusal that keeps nothing of his", err, h.exists(staged))
	}

	h.setQuota("user", "carol", ptr(2), nil)
	img := h.importAs(carol, "again", staged, data)
	if img.User != "carol" {
		t.Errorf("the retried create made %+v", img)
	}
	waitFor(t, "the imported upload to be deleted", func() bool { return !h.exists(staged) })
}
