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

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// blankAs has b create an empty DATABLOCK of mib MiB and waits for its
// answer (image-created or the refusal).
func (h *harness) blankAs(b *bus.Bus, name string, mib int64) (schemas.Image, error) {
	h.t.Helper()
	return answerFrom[schemas.Image](h, b, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: name, SizeMiB: mib}, schemas.EventCatalogImageCreated)
}

// finish plays the converter for img and waits for it to be READY.
func (h *harness) finish(img schemas.Image) {
	h.t.Helper()
	cmd, c := h.convertCommand(img.ID)
	h.convert(cmd, c, []byte("data of "+img.Name), c.Format)
	h.waitState(img.ID, StateReady)
}

// setQuota sends user-quota or group-quota as oneadmin.
func (h *harness) setQuota(kind, name string, images, size *int64) {
	h.t.Helper()
	var err error
	if kind == "user" {
		err = h.as(h.cli, schemas.CommandCatalogUserQuota, schemas.UserQuota{Name: name, Datastore: "default", Images: images, SizeMb: size}, schemas.EventCatalogUserUpdated)
	} else {
		err = h.as(h.cli, schemas.CommandCatalogGroupQuota, schemas.GroupQuota{Name: name, Datastore: "default", Images: images, SizeMb: size}, schemas.EventCatalogGroupUpdated)
	}
	if err != nil {
		h.t.Fatalf("%s-quota %s: %v", kind, name, err)
	}
}

func ptr(n int64) *int64 { return &n }

// mustExceed checks that err is a quota refusal saying says.
func mustExceed(t *testing.T, what string, err error, says string) {
	t.Helper()
	var ce *bus.CallError
	if !errors.As(err, &ce) || ce.Code != schemas.CodeQuotaExceeded || !strings.Contains(ce.Message, says) {
		t.Errorf("%s: %v, want a %s refusal saying %q", what, err, schemas.CodeQuotaExceeded, says)
	}
}

// usedIn is the usage a user's (or group's) quota report shows for the
// default datastore.
func usedIn(t *testing.T, qs []schemas.DatastoreQuota) (limits schemas.DatastoreQuota, images, mb int64) {
	t.Helper()
	for _, q := range qs {
		if q.Datastore == "default" {
			if q.ImagesUsed == nil || q.SizeMbUsed == nil {
				t.Fatalf("quota report without usage: %+v", q)
			}
			return q, *q.ImagesUsed, *q.SizeMbUsed
		}
	}
	t.Fatalf("no quota report for datastore default: %+v", qs)
	return
}

// imageKeys lists what the default datastore holds.
func (h *harness) imageKeys() []string {
	h.t.Helper()
	keys, err := h.blobs.List(h.ctx, h.cfg.Datastores[0].Bucket, "images/")
	if err != nil {
		h.t.Fatal(err)
	}
	return keys
}

// converterCommands counts the commands sent to the converter.
func (h *harness) converterCommands() int {
	return len(h.rec.All(func(m *nats.Msg) bool { return strings.HasPrefix(m.Subject, "slipway.cmd.converter.") }))
}

// TestQuotaImagesPerUser: with IMAGES 1, alice's second image is refused
// (quota-exceeded, naming the quota) before anything is recorded, sent or
// stored; deleting her image gives the slot back; bob, with no quota, is
// unlimited; the oneadmin user and group have none to set; user show
// reports the limits and the usage.
func TestQuotaImagesPerUser(t *testing.T) {
	h := newHarness(t)
	alice := h.newUser("alice", "")
	bob := h.newUser("bob", "")
	h.setQuota("user", "alice", ptr(1), nil)

	first, err := h.blankAs(alice, "one", 1)
	if err != nil {
		t.Fatal(err)
	}
	h.finish(first)
	keys, sent := h.imageKeys(), h.converterCommands()

	_, err = h.blankAs(alice, "two", 1)
	mustExceed(t, "alice's second image", err, "user alice: quota IMAGES 1 reached in datastore default")
	if got := h.imageKeys(); !slices.Equal(got, keys) {
		t.Errorf("the refused image wrote to the store: %v, before %v", got, keys)
	}
	if n := h.converterCommands(); n != sent {
		t.Errorf("the refused image was sent to the converter (%d commands, %d before)", n, sent)
	}
	if list, _ := bus.Ask(h.ctx, alice, schemas.QryCatalogList, schemas.CatalogListRequest{}); len(list) != 1 {
		t.Errorf("alice has %d images after the refusal, want 1: %+v", len(list), list)
	}
	// The name was given back: it is free once the quota allows.
	u, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUser, schemas.CatalogUserRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if q, n, mb := usedIn(t, u.Quotas); q.Images != 1 || q.SizeMb != QuotaDefault || n != 1 || mb != 1 {
		t.Errorf("alice's quota: %+v, used %d images %d MB; want IMAGES 1, SIZE -1, 1 image of 1 MB", q, n, mb)
	}

	// Deleting her image gives the slot back.
	if err := h.as(alice, schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: first.ID}, schemas.EventCatalogImageDeleted); err != nil {
		t.Fatal(err)
	}
	u, _ = bus.Ask(h.ctx, alice, schemas.QryCatalogUser, schemas.CatalogUserRequest{Name: "alice"})
	if _, n, mb := usedIn(t, u.Quotas); n != 0 || mb != 0 {
		t.Errorf("after the delete alice uses %d images, %d MB", n, mb)
	}
	if _, err := h.blankAs(alice, "two", 1); err != nil {
		t.Errorf("alice's image after freeing the slot: %v", err)
	}

	// No quota: unlimited (the default, -1).
	for i := range 3 {
		if _, err := h.blankAs(bob, fmt.Sprintf("b%d", i), 1); err != nil {
			t.Errorf("bob's image %d: %v", i, err)
		}
	}
	// -2 lifts alice's limit.
	h.setQuota("user", "alice", ptr(QuotaUnlimited), nil)
	if _, err := h.blankAs(alice, "three", 1); err != nil {
		t.Errorf("alice's image with IMAGES -2: %v", err)
	}
	// OpenNebula tracks no quota for the oneadmin user and group.
	for _, c := range []struct{ verb, name string }{
		{schemas.CommandCatalogUserQuota, acl.AdminUser}, {schemas.CommandCatalogGroupQuota, acl.AdminGroup},
	} {
		var data any = schemas.UserQuota{Name: c.name, Datastore: "default", Images: ptr(0)}
		if c.verb == schemas.CommandCatalogGroupQuota {
			data = schemas.GroupQuota{Name: c.name, Datastore: "default", Images: ptr(0)}
		}
		var ce *bus.CallError
		if err := h.as(h.cli, c.verb, data, schemas.EventCatalogUserUpdated); !errors.As(err, &ce) || !strings.Contains(ce.Message, "has no quota") {
			t.Errorf("%s %s: %v, want a refusal", c.verb, c.name, err)
		}
	}
}

// TestQuotaGroupAndSize: a group's SIZE quota counts every member's
// images by their declared size at create and their virtual size at
// commit; an import whose size turns out too big ends in ERROR naming the
// quota and its blob is deleted.
func TestQuotaGroupAndSize(t *testing.T) {
	h := newHarness(t)
	if err := h.as(h.cli, schemas.CommandCatalogGroupCreate, schemas.GroupCreate{Name: "devs"}, schemas.EventCatalogGroupCreated); err != nil {
		t.Fatal(err)
	}
	carol := h.newUser("carol", "devs")
	dave := h.newUser("dave", "devs")
	h.setQuota("group", "devs", nil, ptr(100))

	if _, err := h.blankAs(carol, "sixty", 60); err != nil {
		t.Fatal(err)
	}
	_, err := h.blankAs(dave, "sixty", 60)
	mustExceed(t, "dave's 60 MB in a group with 60 of 100 MB used", err, "group devs: quota SIZE 100 MB exceeded in datastore default (60 MB used, the image needs 60 MB)")
	if _, err := h.blankAs(dave, "forty", 40); err != nil {
		t.Errorf("dave's 40 MB fills the group's quota exactly: %v", err)
	}
	groups, err := bus.Ask(h.ctx, h.cli, schemas.QryCatalogGroups, schemas.CatalogGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if g.Name == "devs" {
			if q, n, mb := usedIn(t, g.Quotas); q.SizeMb != 100 || n != 2 || mb != 100 {
				t.Errorf("devs: %+v, used %d images %d MB; want SIZE 100, 2 images of 100 MB", q, n, mb)
			}
		}
	}

	// An import's size is known at commit only: within the quota when it
	// is created (1 MB at least), too big when the converter reports it.
	h.setQuota("group", "devs", nil, ptr(110))
	staged := "s3://" + h.cfg.UploadBucket + "/uploads/carol/c1/disk.raw"
	h.put(staged, []byte("carol's disk"))
	img, err := answerFrom[schemas.Image](h, carol, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "big", Path: staged, Staged: true, Format: schemas.DiskFormatRaw}, schemas.EventCatalogImageCreated)
	if err != nil {
		t.Fatal(err)
	}
	cmd, c := h.convertCommand(img.ID)
	// The converter is told what the quota leaves, to refuse a bigger
	// import before it stores anything; this one (a converter that does
	// not look) stores 20 MB anyway, which the commit catches.
	if c.MaxVirtualSize != 10<<20 {
		t.Errorf("the converter may import %d bytes, want the 10 MB the group's quota leaves", c.MaxVirtualSize)
	}
	data := []byte("twenty MB once inflated")
	h.put(c.Dest, data)
	info, err := h.blobs.Stat(h.ctx, h.cfg.Datastores[0].Bucket, strings.TrimPrefix(c.Dest, "s3://"+h.cfg.Datastores[0].Bucket+"/"))
	if err != nil {
		t.Fatal(err)
	}
	h.converterEvent(cmd, "converted", img.ID, schemas.ConverterConverted{ImageID: img.ID, Dest: c.Dest, Format: schemas.DiskFormatRaw,
		VirtualSize: 20 << 20, Size: info.Size, SHA256: sha(data), DetectedFormat: schemas.DiskFormatRaw})
	ev := h.waitState(img.ID, StateError)
	if !strings.Contains(ev.Error, "group devs: quota SIZE 110 MB exceeded in datastore default (100 MB used, the image needs 20 MB)") {
		t.Errorf("the import too big for the quota ended with %q", ev.Error)
	}
	cause, err := envelope.FromHeader(cmd.Header)
	if err != nil {
		t.Fatal(err)
	}
	_, failed := h.waitFailed(cause)
	if failed.Code != schemas.CodeQuotaExceeded {
		t.Errorf("failed event code %s, want %s", failed.Code, schemas.CodeQuotaExceeded)
	}
	if !testenv.Eventually(10*time.Second, 50*time.Millisecond, func() bool { return !h.exists(c.Dest) }) {
		t.Errorf("the blob of the import refused by the quota is still at %s", c.Dest)
	}
	// In ERROR it holds no data: it counts as an image of 0 MB.
	if got := h.mustShow(img.ID); got.Size != 0 {
		t.Errorf("the image in ERROR has size %d", got.Size)
	}

	// A converter that refuses the import for the limit it was given: the
	// reason says which quota set it.
	h.put(staged, []byte("carol's disk"))
	huge, err := answerFrom[schemas.Image](h, carol, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "huge", Path: staged, Staged: true}, schemas.EventCatalogImageCreated)
	if err != nil {
		t.Fatal(err)
	}
	cmd, c = h.convertCommand(huge.ID)
	if c.MaxVirtualSize != 10<<20 {
		t.Errorf("the second import may be %d bytes, want 10 MB", c.MaxVirtualSize)
	}
	h.converterEvent(cmd, "failed", huge.ID, schemas.Failure{Code: schemas.CodeInvalidInput, ImageID: &huge.ID,
		Phase: string(schemas.ConverterPhaseInspect), Error: "raw: virtual size 50.0 MiB exceeds 10.0 MiB"})
	ev = h.waitState(huge.ID, StateError)
	if !strings.Contains(ev.Error, "limited to a virtual size of 10 MB by group devs's quota SIZE 110 MB in datastore default") {
		t.Errorf("the import the converter refused for the quota's limit ended with %q", ev.Error)
	}
}

// TestQuotaLastSlotRace: eight creates race for alice's last slot through
// a catalog that handles eight commands at once: exactly one passes.
func TestQuotaLastSlotRace(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Concurrency = 8 })
	alice := h.newUser("alice", "")
	h.setQuota("user", "alice", ptr(2), nil)
	if _, err := h.blankAs(alice, "first", 1); err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = h.blankAs(alice, fmt.Sprintf("racer-%d", i), 1) })
	}
	wg.Wait()
	passed := 0
	for i, err := range errs {
		if err == nil {
			passed++
			continue
		}
		mustExceed(t, fmt.Sprintf("racer %d", i), err, "user alice: quota IMAGES 2 reached")
	}
	if passed != 1 {
		t.Errorf("%d of %d racers took the last slot, want exactly 1", passed, n)
	}
	if list, _ := bus.Ask(h.ctx, alice, schemas.QryCatalogList, schemas.CatalogListRequest{}); len(list) != 2 {
		t.Errorf("alice has %d images, want 2", len(list))
	}
}

// TestQuotaOnlyAdministrators: a user's user-quota or group-quota never
// reaches the catalog (the server refuses the subject); oneadmin's does.
func TestQuotaOnlyAdministrators(t *testing.T) {
	h := newHarness(t)
	alice := h.newUser("alice", "")
	for _, c := range []struct {
		verb string
		data any
	}{
		{schemas.CommandCatalogUserQuota, schemas.UserQuota{Name: "alice", Datastore: "default", Images: ptr(-2)}},
		{schemas.CommandCatalogGroupQuota, schemas.GroupQuota{Name: acl.DefaultGroup, Datastore: "default", Images: ptr(-2)}},
	} {
		short, cancel := context.WithTimeout(h.ctx, 2*time.Second)
		if _, err := alice.Command(short, ServiceName, c.verb, c.data); err == nil {
			t.Errorf("the server took alice's %s", c.verb)
		}
		cancel()
	}
	u, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUser, schemas.CatalogUserRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if q, _, _ := usedIn(t, u.Quotas); q.Images != QuotaDefault {
		t.Errorf("alice's quota after her own attempt: %+v", q)
	}
	h.setQuota("group", acl.DefaultGroup, ptr(5), ptr(1024))
	groups, _ := bus.Ask(h.ctx, h.cli, schemas.QryCatalogGroups, schemas.CatalogGroupsRequest{})
	for _, g := range groups {
		if g.Name == acl.DefaultGroup {
			if q, _, _ := usedIn(t, g.Quotas); q.Images != 5 || q.SizeMb != 1024 {
				t.Errorf("users group quota: %+v", q)
			}
		}
	}
	// A datastore that does not exist is refused.
	var ce *bus.CallError
	err = h.as(h.cli, schemas.CommandCatalogUserQuota, schemas.UserQuota{Name: "alice", Datastore: "nowhere", Images: ptr(1)}, schemas.EventCatalogUserUpdated)
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, `datastore "nowhere" does not exist`) {
		t.Errorf("quota on a missing datastore: %v", err)
	}
}

// TestListFilters: OpenNebula's filter flags, always within what the
// asker may use. alice owns a1; bob owns b1 (640: his group may use it)
// and b2 (600); carol, of group devs, owns c1 (604: anyone may use it).
func TestListFilters(t *testing.T) {
	h := newHarness(t)
	if err := h.as(h.cli, schemas.CommandCatalogGroupCreate, schemas.GroupCreate{Name: "devs"}, schemas.EventCatalogGroupCreated); err != nil {
		t.Fatal(err)
	}
	alice, bob, carol := h.newUser("alice", ""), h.newUser("bob", ""), h.newUser("carol", "devs")
	mk := func(b *bus.Bus, name, perms string) {
		img, err := h.blankAs(b, name, 1)
		if err != nil {
			t.Fatal(err)
		}
		if perms != "" {
			if err := h.as(b, schemas.CommandCatalogImageChmod, schemas.ImageChmod{ID: img.ID, Permissions: perms}, schemas.EventCatalogImageUpdated); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk(alice, "a1", "")
	mk(bob, "b1", "640")
	mk(bob, "b2", "")
	mk(carol, "c1", "604")

	names := func(b *bus.Bus, f schemas.ListFilter) string {
		list, err := bus.Ask(h.ctx, b, schemas.QryCatalogList, schemas.CatalogListRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, img := range list {
			out = append(out, img.Name)
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct {
		who    string
		b      *bus.Bus
		filter schemas.ListFilter
		want   string
	}{
		{"alice", alice, "", "a1,b1,c1"},
		{"alice", alice, schemas.ListFilterAll, "a1,b1,c1"},
		{"alice", alice, schemas.ListFilterMine, "a1"},
		{"alice", alice, schemas.ListFilterGroup, "a1,b1"},
		{"bob", bob, "", "b1,b2,c1"},
		{"bob", bob, schemas.ListFilterGroup, "b1,b2"},
		{"carol", carol, schemas.ListFilterGroup, "c1"},
		{"oneadmin", h.cli, "", "a1,b1,b2,c1"},
		{"oneadmin", h.cli, schemas.ListFilterMine, ""},
	} {
		if got := names(c.b, c.filter); got != c.want {
			t.Errorf("%s lists %q: %s, want %s", c.who, c.filter, got, c.want)
		}
	}
}
