package catalog

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// permissionTable is what each catalog command needs on the image it
// names, written from OpenNebula's rules and not read from the schemas:
// use to run it as a VM's disk or clone it; manage to delete, enable,
// disable, make (non)persistent, rename, update, chmod it or change its
// key slots (OpenNebula's snapshot operations: they rewrite the image);
// admin to chown or chgrp it. "" is no check on an image: the command
// names none (users, groups, quotas, image-create), or only services send
// it (image-release), whom the schemas' senders bound.
var permissionTable = map[string]string{
	schemas.CommandCatalogImageUse:           "use",
	schemas.CommandCatalogImageEncrypt:       "use",
	schemas.CommandCatalogImageClone:         "use",
	schemas.CommandCatalogImageLock:          "manage",
	schemas.CommandCatalogImageUnlock:        "manage",
	schemas.CommandCatalogImageDelete:        "manage",
	schemas.CommandCatalogImageEnable:        "manage",
	schemas.CommandCatalogImageDisable:       "manage",
	schemas.CommandCatalogImagePersistent:    "manage",
	schemas.CommandCatalogImageNonpersistent: "manage",
	schemas.CommandCatalogImageRename:        "manage",
	schemas.CommandCatalogImageUpdate:        "manage",
	schemas.CommandCatalogImageChmod:         "manage",
	schemas.CommandCatalogImageSlotAdd:       "manage",
	schemas.CommandCatalogImageSlotRemove:    "manage",
	schemas.CommandCatalogImageSlotRotate:    "manage",
	// OpenNebula's snapshot-revert, -delete and -flatten are MANAGE.
	schemas.CommandCatalogImageSnapshotRevert:  "manage",
	schemas.CommandCatalogImageSnapshotDelete:  "manage",
	schemas.CommandCatalogImageSnapshotFlatten: "manage",
	schemas.CommandCatalogImageChown:           "admin",
	schemas.CommandCatalogImageChgrp:           "admin",

	schemas.CommandCatalogImageCreate:     "",
	schemas.CommandCatalogImageRelease:    "",
	schemas.CommandCatalogImageCopyLock:   "",
	schemas.CommandCatalogUserCreate:      "",
	schemas.CommandCatalogUserCredentials: "",
	schemas.CommandCatalogUserDelete:      "",
	schemas.CommandCatalogUserQuota:       "",
	schemas.CommandCatalogGroupCreate:     "",
	schemas.CommandCatalogDatastoreCreate: "",
	schemas.CommandCatalogDatastoreDelete: "",
	schemas.CommandCatalogDatastoreChmod:  "",
	schemas.CommandCatalogDatastoreChown:  "",
	schemas.CommandCatalogGroupDelete:     "",
	schemas.CommandCatalogGroupAddUser:    "",
	schemas.CommandCatalogGroupDelUser:    "",
	schemas.CommandCatalogGroupQuota:      "",
}

// Rows of the walk that are no command of the table: chmod of the admin
// bits (the handler asks admin besides authorize's manage), and the
// queries that show an image or hand out its blob, which need use
// (OpenNebula's oneimage show).
const (
	rowChmodAdminBits = "image-chmod of the admin bits"
	rowShow           = "show"
	rowBlobURL        = "blob-url"
	rowBlobCreds      = "blob-creds"
)

// permRow is one line of the walk: what is sent, the bits of one digit
// (owner, group or other) that give what it needs, and whether it uses
// its image up.
type permRow struct {
	name  string
	needs acl.Perms
	fresh bool
}

// bitsOf is level's bit in a digit: use 4, manage 2, admin 1.
func bitsOf(level string) acl.Perms { return 4 >> acl.LevelOf(level) }

// permRows are the table's commands that name an image, sorted, then the
// other rows.
func permRows() []permRow {
	var rows []permRow
	for name, level := range permissionTable {
		if level != "" {
			rows = append(rows, permRow{name: name, needs: bitsOf(level), fresh: name == schemas.CommandCatalogImageDelete})
		}
	}
	slices.SortFunc(rows, func(a, b permRow) int { return strings.Compare(a.name, b.name) })
	return append(rows,
		permRow{name: rowChmodAdminBits, needs: bitsOf("manage") | bitsOf("admin")},
		permRow{name: rowShow, needs: bitsOf("use")},
		permRow{name: rowBlobURL, needs: bitsOf("use")},
		permRow{name: rowBlobCreds, needs: bitsOf("use")})
}

// refusing are the digits that must not pass a row needing bits: the
// levels below the highest it needs, and every digit that lacks one of
// its bits (the levels are bits, not a ladder: admin does not give
// manage).
func refusing(needs acl.Perms) []acl.Perms {
	highest := needs & -needs // the lowest bit is the highest level
	out := []acl.Perms{7 &^ (2*highest - 1)}
	for b := acl.Perms(1); b <= 4; b <<= 1 {
		if needs&b != 0 && !slices.Contains(out, 7&^b) {
			out = append(out, 7&^b)
		}
	}
	return out
}

// relation is how alice stands to bob's image: which digit of its bits is
// hers. The others are full, so that only hers can decide.
type relation struct {
	name  string
	perms func(digit acl.Perms) acl.Perms
}

var (
	// asOther: the group's bits are full, but alice is not in the group.
	asOther = relation{"other", func(d acl.Perms) acl.Perms { return 0o770 | d }}
	// asGroupMember: nothing for others; alice is in the image's group.
	asGroupMember = relation{"group member", func(d acl.Perms) acl.Perms { return 0o700 | d<<3 }}
)

// permWalk is the state of TestPermissionTableWalk.
type permWalk struct {
	h        *harness
	users    map[string]*bus.Bus
	launcher *bus.Bus
	// n numbers the names and VM ids the walk makes up.
	n int
}

// TestPermissionTableWalk walks the permission table: first the table of
// OpenNebula's rules above is the schemas' (schemas.AccessOf), command by
// command, both ways; then, through the catalog on a server that
// authenticates, for each row and each way alice stands to bob's READY
// image (other; member of its group through a group she is added to),
// bits that give her only the levels below what the row needs (and any
// digit lacking one of its bits) are refused with code forbidden, and
// bits that give exactly what it needs are not: the command is answered,
// or refused for another reason (the key-slot commands on a plain image:
// "not a LUKS image", after the check; slots_test.go runs them on LUKS
// images). image-use comes from the launcher acting on_behalf_of alice:
// it gets alice's result. The rows include the queries show, blob-url and
// blob-creds (what the grants read: s3access_test.go). A user of the
// oneadmin group passes every row on an image with no bits at all.
func TestPermissionTableWalk(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range schemas.Messages() {
		if m.Kind != schemas.KindCommand || m.Service != ServiceName {
			continue
		}
		seen[m.Name] = true
		want, ok := permissionTable[m.Name]
		if got := schemas.AccessOf(ServiceName, m.Name); !ok || got != want {
			t.Errorf("%s: the schemas say a user needs %q, the table %q (in the table: %v)", m.Name, got, want, ok)
		}
	}
	for name := range permissionTable {
		if !seen[name] {
			t.Errorf("the table has %s, which is no catalog command of the schemas", name)
		}
	}
	if t.Failed() {
		return
	}

	h := newHarness(t)
	h.withOwnS3Identity() // blob-creds: temporary keys need the catalog's own MinIO user
	if err := h.as(h.cli, schemas.CommandCatalogGroupCreate, schemas.GroupCreate{Name: "devs"}, schemas.EventCatalogGroupCreated); err != nil {
		t.Fatal(err)
	}
	w := &permWalk{h: h, launcher: h.connect(schemas.ServiceLauncher), users: map[string]*bus.Bus{
		"bob":   h.newUser("bob", ""),
		"alice": h.newUser("alice", "devs"), // not in users, the group of bob's images
		"carol": h.newUser("carol", acl.AdminGroup),
	}}
	img := h.bobsImage(w.users["bob"])
	rows := permRows()

	w.walk(rows, img.ID, asOther)
	if err := h.as(h.cli, schemas.CommandCatalogGroupAddUser, schemas.GroupAddUser{Group: img.Group, User: "alice"}, schemas.EventCatalogUserUpdated); err != nil {
		t.Fatal(err)
	}
	w.walk(rows, img.ID, asGroupMember)

	// The oneadmin group passes everything, on an image with no bits.
	for _, row := range rows {
		id := w.imageFor(row, img.ID)
		w.mustPass(row, "carol", w.setPerms(id, 0))
	}
}

// walk runs every row for alice standing to image id as rel.
func (w *permWalk) walk(rows []permRow, id int64, rel relation) {
	for _, row := range rows {
		target := w.imageFor(row, id)
		for _, d := range refusing(row.needs) {
			img := w.setPerms(target, rel.perms(d))
			what := fmt.Sprintf("alice (%s) %s with bits %s", rel.name, row.name, img.Permissions)
			mustBeForbidden(w.h.t, what, w.send(row.name, "alice", img), "user alice may not")
		}
		w.mustPass(row, "alice", w.setPerms(target, rel.perms(row.needs)))
	}
}

// mustPass sends row as who on img and checks that no right was missing:
// an answer, or a refusal for another reason.
func (w *permWalk) mustPass(row permRow, who string, img schemas.Image) {
	w.h.t.Helper()
	w.undo(row.name, img)
	err := w.send(row.name, who, img)
	what := fmt.Sprintf("%s %s with bits %s", who, row.name, img.Permissions)
	if msg, forbidden := forbiddenMessage(err); forbidden {
		w.h.t.Errorf("%s: refused as forbidden: %s", what, msg)
		return
	}
	var ce *bus.CallError
	var qe *bus.QueryError
	switch {
	case err == nil:
	case errors.As(err, &ce), errors.As(err, &qe):
		w.h.t.Logf("%s: allowed, then refused: %v", what, err)
	default:
		w.h.t.Errorf("%s: no answer: %v", what, err)
	}
}

// opposites are the commands that publish nothing when they change
// nothing (the CLI's action.reached knows it too), each with the command
// that undoes it and how to tell it is already done.
var opposites = map[string]struct {
	undo string
	done func(schemas.Image) bool
}{
	schemas.CommandCatalogImageEnable:        {schemas.CommandCatalogImageDisable, func(img schemas.Image) bool { return State(img.State) == StateReady }},
	schemas.CommandCatalogImageDisable:       {schemas.CommandCatalogImageEnable, func(img schemas.Image) bool { return State(img.State) == StateDisabled }},
	schemas.CommandCatalogImagePersistent:    {schemas.CommandCatalogImageNonpersistent, func(img schemas.Image) bool { return img.Persistent }},
	schemas.CommandCatalogImageNonpersistent: {schemas.CommandCatalogImagePersistent, func(img schemas.Image) bool { return !img.Persistent }},
}

// undo has oneadmin undo what row would do on img when it is already
// done, so that row changes something and is answered.
func (w *permWalk) undo(row string, img schemas.Image) {
	w.h.t.Helper()
	o, ok := opposites[row]
	if !ok || !o.done(img) {
		return
	}
	if err := w.send(o.undo, acl.AdminUser, img); err != nil {
		w.h.t.Fatalf("oneadmin %s image %d: %v", o.undo, img.ID, err)
	}
}

// imageFor is the image a row is walked on: id, or for a row that uses
// its image up a new one of bob's.
func (w *permWalk) imageFor(row permRow, id int64) int64 {
	if !row.fresh {
		return id
	}
	w.n++
	staged := blob.URL(w.h.cfg.UploadBucket, fmt.Sprintf("uploads/bob/walk%d/disk.raw", w.n))
	w.h.put(staged, []byte("bob's disk"))
	return w.h.importAs(w.users["bob"], fmt.Sprintf("walk-%d", w.n), staged, []byte("bob's data")).ID
}

// setPerms has oneadmin chmod image id to p and returns the record.
func (w *permWalk) setPerms(id int64, p acl.Perms) schemas.Image {
	w.h.t.Helper()
	img, err := answerFrom[schemas.Image](w.h, w.h.cli, schemas.CommandCatalogImageChmod,
		schemas.ImageChmod{ID: id, Permissions: p.Octal()}, schemas.EventCatalogImageUpdated)
	if err != nil || img.Permissions != p.Octal() {
		w.h.t.Fatalf("oneadmin chmods image %d to %s: %+v, %v", id, p.Octal(), img, err)
	}
	return img
}

// send sends row as user who on img, with a valid payload of its schema
// type, and waits for its answer or refusal. image-use comes from the
// launcher, acting for who.
func (w *permWalk) send(row, who string, img schemas.Image) error {
	w.h.t.Helper()
	w.n++
	h, b, id, n := w.h, w.users[who], img.ID, w.n
	if who == acl.AdminUser {
		b = h.cli
	}
	ref := schemas.ImageRef{ID: id}
	updated := schemas.EventCatalogImageUpdated
	switch row {
	case schemas.CommandCatalogImageUse:
		err := h.as(w.launcher, row, schemas.ImageUse{ID: id, VMID: int64(n), OnBehalfOf: who}, schemas.EventCatalogImageUsed)
		if err == nil { // the VM lets it go: READY again for the rows that follow
			err = h.as(w.launcher, schemas.CommandCatalogImageRelease, schemas.ImageRelease{ID: id, VMID: int64(n)}, EvtImageReleased)
		}
		return err
	case schemas.CommandCatalogImageEncrypt:
		return h.as(b, row, schemas.ImageEncrypt{ID: id, Name: fmt.Sprintf("enc-%d", n)}, schemas.EventCatalogImageCreated)
	case schemas.CommandCatalogImageClone: // and waits for the copy: the source is READY again
		c, err := answerFrom[schemas.Image](h, b, row, schemas.ImageClone{ID: id, Name: fmt.Sprintf("clone-%d", n)}, schemas.EventCatalogImageCreated)
		if err == nil {
			h.waitState(c.ID, StateReady)
		}
		return err
	case schemas.CommandCatalogImageLock: // and oneadmin unlocks it for the rows that follow
		err := h.as(b, row, schemas.ImageLockRequest{ID: id}, updated)
		w.unlocked(id)
		return err
	case schemas.CommandCatalogImageUnlock: // of an image oneadmin locked
		if err := h.as(h.cli, schemas.CommandCatalogImageLock, schemas.ImageLockRequest{ID: id, Level: schemas.LockLevelAdmin}, updated); err != nil {
			h.t.Fatal(err)
		}
		err := h.as(b, row, ref, updated)
		w.unlocked(id)
		return err
	case schemas.CommandCatalogImageDelete:
		return h.as(b, row, ref, schemas.EventCatalogImageDeleted)
	case schemas.CommandCatalogImageEnable, schemas.CommandCatalogImageDisable:
		return h.as(b, row, ref, schemas.EventCatalogStateChanged)
	case schemas.CommandCatalogImagePersistent, schemas.CommandCatalogImageNonpersistent:
		return h.as(b, row, ref, updated)
	case schemas.CommandCatalogImageRename:
		return h.as(b, row, schemas.ImageRename{ID: id, Name: fmt.Sprintf("renamed-%d", n)}, updated)
	case schemas.CommandCatalogImageUpdate:
		return h.as(b, row, schemas.ImageUpdate{ID: id, Attributes: map[string]string{"WALK": strconv.Itoa(n)}}, updated)
	case schemas.CommandCatalogImageChmod: // the owner's use bit: never an admin bit
		return h.as(b, row, schemas.ImageChmod{ID: id, Permissions: (acl.PermsOf(img.Permissions) ^ 0o400).Octal()}, updated)
	case rowChmodAdminBits: // the owner's admin bit
		return h.as(b, schemas.CommandCatalogImageChmod, schemas.ImageChmod{ID: id, Permissions: (acl.PermsOf(img.Permissions) ^ 0o100).Octal()}, updated)
	case schemas.CommandCatalogImageChown: // to its owner: a change that changes nothing
		return h.as(b, row, schemas.ImageChown{ID: id, User: img.User}, updated)
	case schemas.CommandCatalogImageChgrp:
		return h.as(b, row, schemas.ImageChgrp{ID: id, Group: img.Group}, updated)
	case schemas.CommandCatalogImageSlotAdd:
		return h.as(b, row, schemas.ImageSlotAdd{ID: id}, EvtImageSlotsChanged)
	case schemas.CommandCatalogImageSlotRemove:
		return h.as(b, row, schemas.ImageSlotRemove{ID: id, Slot: 1}, EvtImageSlotsChanged)
	case schemas.CommandCatalogImageSlotRotate:
		return h.as(b, row, schemas.ImageSlotRotate{ID: id}, EvtImageSlotsChanged)
	case schemas.CommandCatalogImageSnapshotRevert, schemas.CommandCatalogImageSnapshotDelete, schemas.CommandCatalogImageSnapshotFlatten:
		// Bob's image has no snapshots: allowed, then refused for that.
		return h.as(b, row, schemas.ImageSnapshotRevert{ID: id, Snapshot: 0}, EvtImageSnapshotChanged)
	case rowShow:
		_, err := bus.Ask(h.ctx, b, schemas.QryCatalogShow, schemas.CatalogShowRequest{ID: &id})
		return err
	case rowBlobURL:
		_, err := bus.Ask(h.ctx, b, schemas.QryCatalogBlobURL, schemas.CatalogBlobURLRequest{ID: id})
		return err
	case rowBlobCreds:
		_, err := bus.Ask(h.ctx, b, schemas.QryCatalogBlobCreds, schemas.CatalogBlobCredsRequest{ID: id})
		return err
	}
	h.t.Fatalf("the walk does not know how to send %s: add it to permWalk.send", row)
	return nil
}

// unlocked has oneadmin unlock image id if it is locked.
func (w *permWalk) unlocked(id int64) {
	w.h.t.Helper()
	if img := w.h.mustShow(id); img.Lock != nil {
		if err := w.h.as(w.h.cli, schemas.CommandCatalogImageUnlock, schemas.ImageRef{ID: id}, schemas.EventCatalogImageUpdated); err != nil {
			w.h.t.Fatal(err)
		}
	}
}
