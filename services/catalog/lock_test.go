package catalog

import (
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/schemas"
)

func (h *harness) lock(id int64, level schemas.LockLevel) {
	h.t.Helper()
	if _, err := h.call(schemas.CommandCatalogImageLock, schemas.ImageLockRequest{ID: id, Level: level}, schemas.EventCatalogImageUpdated); err != nil {
		h.t.Fatalf("lock image %d (%s): %v", id, level, err)
	}
}

func (h *harness) unlock(id int64) {
	h.t.Helper()
	if _, err := h.call(schemas.CommandCatalogImageUnlock, schemas.ImageRef{ID: id}, schemas.EventCatalogImageUpdated); err != nil {
		h.t.Fatalf("unlock image %d: %v", id, err)
	}
}

// TestLockLevels walks OpenNebula's lock levels through the bus: a
// command at or above the lock's level is refused, naming who locked the
// image and when; below it, it runs; unlock is never refused.
func TestLockLevels(t *testing.T) {
	h := newHarness(t)
	img := h.ready(schemas.ImageCreate{Name: "base", SizeMiB: 1}, disk(4096))
	// One command of each access level, each answered by image-updated
	// (or image-created) when it runs.
	type probe struct {
		access acl.Level
		verb   string
		req    any
		answer string
	}
	n := 0
	probes := func() []probe {
		n++
		return []probe{
			{acl.Use, schemas.CommandCatalogImageClone, schemas.ImageClone{ID: img.ID, Name: "c" + strings.Repeat("x", n)}, schemas.EventCatalogImageCreated},
			{acl.Manage, schemas.CommandCatalogImageUpdate, schemas.ImageUpdate{ID: img.ID, Attributes: map[string]string{"N": strings.Repeat("x", n)}}, schemas.EventCatalogImageUpdated},
			{acl.Admin, schemas.CommandCatalogImageChgrp, schemas.ImageChgrp{ID: img.ID, Group: []string{"users", "oneadmin"}[n%2]}, schemas.EventCatalogImageUpdated},
		}
	}
	for _, tc := range []struct {
		level   schemas.LockLevel
		refuses []acl.Level
	}{
		{schemas.LockLevelUse, []acl.Level{acl.Use, acl.Manage, acl.Admin}},
		{schemas.LockLevelManage, []acl.Level{acl.Manage, acl.Admin}},
		{schemas.LockLevelAdmin, []acl.Level{acl.Admin}},
		{schemas.LockLevelAll, []acl.Level{acl.Use, acl.Manage, acl.Admin}},
	} {
		h.lock(img.ID, tc.level)
		got := h.mustShow(img.ID)
		if got.Lock == nil || got.Lock.Level != tc.level || got.Lock.LockedBy != "oneadmin" || got.Lock.LockedAt == "" {
			t.Fatalf("lock %s: show says %+v", tc.level, got.Lock)
		}
		for _, p := range probes() {
			_, err := h.call(p.verb, p.req, p.answer)
			refused := false
			for _, l := range tc.refuses {
				refused = refused || l == p.access
			}
			switch {
			case refused && err == nil:
				t.Errorf("lock %s: %s (%s) ran", tc.level, p.verb, p.access)
			case refused:
				want := "image 0 is locked (" + strings.ToUpper(string(tc.level)) + ") by oneadmin since " + got.Lock.LockedAt
				if msg := refusalOf(t, err); !strings.HasPrefix(msg, want) {
					t.Errorf("lock %s: %s refused with %q, want %q", tc.level, p.verb, msg, want)
				}
			case err != nil:
				t.Errorf("lock %s: %s (%s) refused: %v", tc.level, p.verb, p.access, err)
			}
		}
		h.unlock(img.ID)
		if got := h.mustShow(img.ID); got.Lock != nil {
			t.Fatalf("unlocked image still shows %+v", got.Lock)
		}
	}
}

// TestLockWhoMay: locking and unlocking need manage; a lock refuses the
// launcher's image-use (a use) but not its image-release.
func TestLockWhoMay(t *testing.T) {
	h := newHarness(t)
	bob := h.newUser("bob", "users")
	alice := h.newUser("alice", "users")
	img := h.bobsImage(bob)
	if _, err := h.callFrom(bob, schemas.CommandCatalogImageChmod, schemas.ImageChmod{ID: img.ID, Permissions: "644"}, schemas.EventCatalogImageUpdated); err != nil {
		t.Fatal(err)
	}
	_, err := h.callFrom(alice, schemas.CommandCatalogImageLock, schemas.ImageLockRequest{ID: img.ID}, schemas.EventCatalogImageUpdated)
	mustBeForbidden(t, "alice locks bob's image (she may only use it)", err, "alice")
	h.mustUse(img.ID, 3)
	if _, err := h.callFrom(bob, schemas.CommandCatalogImageLock, schemas.ImageLockRequest{ID: img.ID, Level: schemas.LockLevelUse}, schemas.EventCatalogImageUpdated); err != nil {
		t.Fatal(err)
	}
	if _, err := h.use(img.ID, 4); err == nil || !strings.Contains(err.Error(), "is locked (USE) by bob since") {
		t.Fatalf("a VM took a USE-locked image: %v", err)
	}
	h.mustRelease(img.ID, 3, nil)
	_, err = h.callFrom(alice, schemas.CommandCatalogImageUnlock, schemas.ImageRef{ID: img.ID}, schemas.EventCatalogImageUpdated)
	mustBeForbidden(t, "alice unlocks bob's image", err, "alice")
	if _, err := h.callFrom(bob, schemas.CommandCatalogImageUnlock, schemas.ImageRef{ID: img.ID}, schemas.EventCatalogImageUpdated); err != nil {
		t.Fatal(err)
	}
	h.mustUse(img.ID, 4)
}
