package catalog

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// changeSlots plays crypto-luks's slot-add, slot-remove and rotate: it
// rewrites the image's blob in place and reports slots-changed (or fails).
// Rewriting while the catalog lets a VM use the image is the race the
// catalog's lock exists to prevent: the stand-in checks the record at the
// moment it writes.
func (f *luksStandIn) changeSlots(ctx context.Context, m *bus.Msg, id int64, mode string) error {
	img, _, err := f.h.svc.images.Get(ctx, id)
	if err != nil {
		return err
	}
	if State(img.State) != StateLocked || img.RVMs != 0 {
		f.t.Errorf("crypto-luks rewrites image %d while it is %s with VMs %v: the catalog did not lock it", id, img.State, img.VMs)
	}
	if mode == "fail" {
		_, err := f.bus.Event(ctx, "failed", idToken(id), schemas.Failure{Code: schemas.CodeRefused, ImageID: &id,
			Error: fmt.Sprintf("image %d: key slot 0 is its only key slot; erasing it would make the image unreadable", id)}, bus.CausedBy(m.Envelope))
		return err
	}
	var c struct {
		Slot *int64 `json:"slot"`
	}
	mustJSON(f.t, m.Data, &c)
	f.mu.Lock()
	if f.slots == nil {
		f.slots = map[int64][]int64{}
	}
	cur := f.slots[id]
	if cur == nil {
		cur = []int64{0}
	}
	ev := schemas.CryptoLuksSlotsChanged{ImageID: id, Secret: img.Attributes[AttrLUKSSecret], Dest: img.Source}
	next := int64(len(cur) + int(cur[len(cur)-1]))
	switch m.Name {
	case "slot-add":
		cur, ev.Added = append(slices.Clone(cur), next), []int64{next}
	case "slot-remove":
		cur, ev.Removed = slices.DeleteFunc(slices.Clone(cur), func(n int64) bool { return n == *c.Slot }), []int64{*c.Slot}
	case "rotate":
		ev.Removed, ev.Added = []int64{cur[0]}, []int64{next}
		cur = append(slices.Clone(cur[1:]), next)
	}
	f.slots[id] = cur
	f.mu.Unlock()
	ev.Slots, ev.Primary = cur, cur[0]
	bucket, key, err := blob.ParseURL(img.Source)
	if err != nil {
		return bus.Terminal(err)
	}
	data := []byte(fmt.Sprintf("LUKS\xba\xbe\x00\x01 stand-in, key slots %v", cur))
	if _, err := f.h.blobs.Put(ctx, bucket, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return err
	}
	ev.Size, ev.SHA256 = int64(len(data)), sha(data)
	_, err = f.bus.Event(ctx, "slots-changed", idToken(id), ev, bus.CausedBy(m.Envelope))
	return err
}

// slotCall sends a key-slot command as the CLI does.
func (h *harness) slotCall(verb string, req any) (schemas.ImageSlotsChanged, error) {
	h.t.Helper()
	return answer[schemas.ImageSlotsChanged](h, verb, req, EvtImageSlotsChanged)
}

// luksVolume makes an empty LUKS image through the stand-in.
func (h *harness) luksVolume(name string) schemas.Image {
	h.t.Helper()
	img := h.create(schemas.ImageCreate{Name: name, SizeMiB: 1, LUKS: true})
	h.waitState(img.ID, StateReady)
	return h.mustShow(img.ID)
}

func TestSlotChangesLockTheImage(t *testing.T) {
	h := newHarness(t)
	luks := newLuksStandIn(h)
	vol := h.luksVolume("vol")
	id := vol.ID

	// Refused before anything is locked or sent.
	plain := h.ready(schemas.ImageCreate{Name: "plain", SizeMiB: 1}, make([]byte, 1024))
	for _, c := range []struct {
		verb string
		req  any
		want string
	}{
		{schemas.CommandCatalogImageSlotAdd, schemas.ImageSlotAdd{ID: 99}, "image 99 does not exist"},
		{schemas.CommandCatalogImageSlotAdd, schemas.ImageSlotAdd{ID: plain.ID}, "is not a LUKS image"},
	} {
		if _, err := h.slotCall(c.verb, c.req); !strings.Contains(refusalOf(t, err), c.want) {
			t.Errorf("%s %+v: %v, want %q", c.verb, c.req, err, c.want)
		}
	}
	h.mustUse(id, 5)
	if _, err := h.slotCall(schemas.CommandCatalogImageSlotAdd, schemas.ImageSlotAdd{ID: id}); !strings.Contains(refusalOf(t, err), "in use") {
		t.Fatalf("slot-add on a used image: %v", err)
	}
	h.mustRelease(id, 5, nil)
	if n := len(luks.received("slot-add", id)); n != 0 {
		t.Fatalf("%d slot-add commands reached crypto-luks for refused changes", n)
	}

	// While crypto-luks rewrites the blob the image is LOCKED: a VM that
	// arrives then is refused, so it never reads a blob being rewritten.
	luks.setMode(id, "hold")
	type result struct {
		ev  schemas.ImageSlotsChanged
		err error
	}
	done := make(chan result, 1)
	go func() {
		ev, err := h.slotCall(schemas.CommandCatalogImageSlotAdd, schemas.ImageSlotAdd{ID: id})
		done <- result{ev, err}
	}()
	waitFor(t, "the image to be locked", func() bool { return State(h.mustShow(id).State) == StateLocked })
	waitFor(t, "crypto-luks to get slot-add", func() bool { return len(luks.received("slot-add", id)) == 1 })
	if _, err := h.use(id, 7); !strings.Contains(refusalOf(t, err), "LOCKED") {
		t.Fatalf("image-use while the key slots change: %v", err)
	}
	if _, err := h.slotCall(schemas.CommandCatalogImageSlotRotate, schemas.ImageSlotRotate{ID: id}); !strings.Contains(refusalOf(t, err), "LOCKED") {
		t.Fatalf("a second slot change while the first runs: %v", err)
	}
	luks.setMode(id, "")
	luks.releaseHeld()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	got := h.mustShow(id)
	stored := h.read(got.Source)
	if !slices.Equal(r.ev.Slots, []int64{0, 1}) || !slices.Equal(r.ev.Added, []int64{1}) || r.ev.SHA256 != sha(stored) ||
		State(r.ev.State) != StateReady {
		t.Fatalf("image-slots-changed %+v", r.ev)
	}
	if State(got.State) != StateReady || got.SHA256 != sha(stored) || got.StoredSize != int64(len(stored)) || got.Source != vol.Source {
		t.Fatalf("after the change: %+v", got)
	}
	h.mustUse(id, 7) // given back: VMs may use it again
	h.mustRelease(id, 7, nil)

	// A DISABLED image is locked and given back DISABLED.
	h.command(schemas.CommandCatalogImageDisable, schemas.ImageRef{ID: id})
	waitFor(t, "disabled", func() bool { return State(h.mustShow(id).State) == StateDisabled })
	ev, err := h.slotCall(schemas.CommandCatalogImageSlotRemove, schemas.ImageSlotRemove{ID: id, Slot: 0})
	if err != nil || State(ev.State) != StateDisabled || !slices.Equal(ev.Removed, []int64{0}) {
		t.Fatalf("slot-remove on a DISABLED image: %+v %v", ev, err)
	}
	if st := State(h.mustShow(id).State); st != StateDisabled {
		t.Fatalf("given back %s, want DISABLED", st)
	}
	h.command(schemas.CommandCatalogImageEnable, schemas.ImageRef{ID: id})
	waitFor(t, "enabled", func() bool { return State(h.mustShow(id).State) == StateReady })

	// crypto-luks refuses: the image is given back, its record unchanged.
	before := h.mustShow(id)
	luks.setMode(id, "fail")
	_, err = h.slotCall(schemas.CommandCatalogImageSlotRemove, schemas.ImageSlotRemove{ID: id, Slot: 1})
	if msg := refusalOf(t, err); !strings.Contains(msg, "only key slot") || !strings.HasPrefix(msg, "slot-remove: ") {
		t.Fatalf("refused slot-remove: %q", msg)
	}
	after := h.mustShow(id)
	if State(after.State) != StateReady || after.SHA256 != before.SHA256 {
		t.Fatalf("after a refused change: %+v", after)
	}
	luks.setMode(id, "")
	h.wantStates(id, "->LOCKED", "LOCKED->READY", "READY->USED", "USED->READY",
		"READY->LOCKED", "LOCKED->READY", "READY->USED", "USED->READY",
		"READY->DISABLED", "DISABLED->LOCKED", "LOCKED->DISABLED", "DISABLED->READY",
		"READY->LOCKED", "LOCKED->READY")
}

// TestSlotChangesRaceVMs races VMs taking the image against key-slot
// changes: each wins or is refused, and crypto-luks never rewrites the
// blob while a VM holds the image (the stand-in checks as it writes).
func TestSlotChangesRaceVMs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Concurrency = 4 })
	luks := newLuksStandIn(h)
	id := h.luksVolume("raced").ID
	var used, changed int
	for round := range 8 {
		vm := int64(100 + round)
		var wg sync.WaitGroup
		var useErr, slotErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			// Odd rounds give the slot change a head start of a few
			// milliseconds, so both orders happen.
			time.Sleep(time.Duration(round%2*(2+round)) * time.Millisecond)
			_, useErr = h.use(id, vm)
		}()
		go func() {
			defer wg.Done()
			_, slotErr = h.slotCall(schemas.CommandCatalogImageSlotRotate, schemas.ImageSlotRotate{ID: id})
		}()
		wg.Wait()
		if useErr != nil {
			if msg := refusalOf(t, useErr); !strings.Contains(msg, "LOCKED") {
				t.Fatalf("round %d: use refused for another reason: %s", round, msg)
			}
		} else {
			used++
			h.mustRelease(id, vm, nil)
		}
		if slotErr != nil {
			if msg := refusalOf(t, slotErr); !strings.Contains(msg, "in use") {
				t.Fatalf("round %d: slot change refused for another reason: %s", round, msg)
			}
		} else {
			changed++
		}
	}
	t.Logf("8 rounds: %d uses, %d slot changes won", used, changed)
	if n := len(luks.received("rotate", id)); n != changed {
		t.Fatalf("%d rotate commands reached crypto-luks, %d changes answered", n, changed)
	}
	if img := h.mustShow(id); State(img.State) != StateReady || img.SHA256 != sha(h.read(img.Source)) {
		t.Fatalf("after the races: %+v", img)
	}
}
