package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// ready imports data as a new image, playing the converter, and waits
// for it to be READY.
func (h *harness) ready(req schemas.ImageCreate, data []byte) schemas.Image {
	h.t.Helper()
	img := h.create(req)
	cmd, c := h.convertCommand(img.ID)
	format := c.Format
	if format == "" {
		format = schemas.DiskFormatRaw
	}
	h.convert(cmd, c, data, format)
	h.waitState(img.ID, StateReady)
	return h.mustShow(img.ID)
}

// call sends a command the way the launcher does (bus.Call), from whoever
// may send it (senderOf), and returns the answer.
func (h *harness) call(verb string, data any, answer string) (*bus.Msg, error) {
	return h.callFrom(h.senderOf(verb), verb, data, answer)
}

// senderOf is a bus that may send the catalog's command verb
// (testenv.CommandSender): the CLI's (oneadmin) when users or
// administrators send it, else one of the service its schema names (the
// launcher, for image-use and image-release).
func (h *harness) senderOf(verb string) *bus.Bus {
	h.t.Helper()
	p := testenv.CommandSender(ServiceName, verb)
	if !p.Service {
		return h.cli
	}
	h.servicesMu.Lock() // tests race commands from several goroutines
	defer h.servicesMu.Unlock()
	if h.services == nil {
		h.services = map[string]*bus.Bus{}
	}
	if h.services[p.Name] == nil {
		h.services[p.Name] = h.connect(p.Name)
	}
	return h.services[p.Name]
}

// callFrom is call from another bus (another sender).
func (h *harness) callFrom(b *bus.Bus, verb string, data any, answer string) (*bus.Msg, error) {
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	return b.Call(ctx, ServiceName, verb, data, []string{answer})
}

// answer sends verb as the CLI does and returns its answer event, decoded,
// or the refusal.
func answer[T any](h *harness, verb string, data any, event string) (T, error) {
	return answerFrom[T](h, h.senderOf(verb), verb, data, event)
}

// answerFrom is answer from another bus (another sender).
func answerFrom[T any](h *harness, b *bus.Bus, verb string, data any, event string) (T, error) {
	h.t.Helper()
	var v T
	m, err := h.callFrom(b, verb, data, event)
	if err == nil {
		mustJSON(h.t, m.Data, &v)
	}
	return v, err
}

func (h *harness) use(id, vm int64) (schemas.ImageUsed, error) {
	h.t.Helper()
	m, err := h.call(schemas.CommandCatalogImageUse, schemas.ImageUse{ID: id, VMID: vm}, EvtImageUsed)
	var ev schemas.ImageUsed
	if err == nil {
		mustJSON(h.t, m.Data, &ev)
		if m.Subject != "slipway.evt.catalog.image-used."+idToken(id) {
			h.t.Errorf("answer on %s", m.Subject)
		}
	}
	return ev, err
}

func (h *harness) mustUse(id, vm int64) schemas.ImageUsed {
	h.t.Helper()
	ev, err := h.use(id, vm)
	if err != nil {
		h.t.Fatalf("VM %d uses image %d: %v", vm, id, err)
	}
	return ev
}

func (h *harness) release(id, vm int64, save *schemas.ImageSave) (schemas.ImageReleased, error) {
	h.t.Helper()
	return answer[schemas.ImageReleased](h, schemas.CommandCatalogImageRelease, schemas.ImageRelease{ID: id, VMID: vm, Save: save}, EvtImageReleased)
}

func (h *harness) mustRelease(id, vm int64, save *schemas.ImageSave) schemas.ImageReleased {
	h.t.Helper()
	ev, err := h.release(id, vm, save)
	if err != nil {
		h.t.Fatalf("VM %d releases image %d: %v", vm, id, err)
	}
	return ev
}

func jsonOK(data []byte, v any) bool { return json.Unmarshal(data, v) == nil }

// refusalOf returns the message of a command refused with a failed event.
func refusalOf(t *testing.T, err error) string {
	t.Helper()
	var ce *bus.CallError
	if !errors.As(err, &ce) {
		t.Fatalf("want a refusal (failed event), got %v", err)
	}
	return ce.Message
}

// wantStates waits until the state changes published for image id are
// want (events reach the recorder on its own subscription, so a little
// after the answer a client waits for).
func (h *harness) wantStates(id int64, want ...string) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := stateChanges(h.rec, id)
		if slices.Equal(got, want) {
			// and nothing more arrives behind them
			time.Sleep(100 * time.Millisecond)
			if got := stateChanges(h.rec, id); !slices.Equal(got, want) {
				h.t.Fatalf("image %d: state changes %v, want %v", id, got, want)
			}
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("image %d: state changes %v, want %v", id, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) read(url string) []byte {
	h.t.Helper()
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		h.t.Fatal(err)
	}
	rc, _, err := h.blobs.Get(h.ctx, bucket, key)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func TestUseReleaseNonPersistent(t *testing.T) {
	h := newHarness(t)
	img := h.ready(schemas.ImageCreate{Name: "shared", SizeMiB: 1}, make([]byte, 4096))

	steps := []struct {
		use      bool
		vm       int64
		state    State
		rvms     int64
		vms      []int64
		describe string
	}{
		{true, 1, StateUsed, 1, []int64{1}, "first VM"},
		{true, 2, StateUsed, 2, []int64{1, 2}, "second VM"},
		{true, 1, StateUsed, 2, []int64{1, 2}, "VM 1 again: no change"},
		{false, 1, StateUsed, 1, []int64{2}, "VM 1 goes"},
		{false, 1, StateUsed, 1, []int64{2}, "VM 1 again: no change"},
		{false, 9, StateUsed, 1, []int64{2}, "a VM that never used it"},
		{false, 2, StateReady, 0, nil, "the last VM goes"},
		{true, 3, StateUsed, 1, []int64{3}, "used again"},
	}
	for _, st := range steps {
		var state schemas.ImageState
		var rvms int64
		if st.use {
			ev := h.mustUse(img.ID, st.vm)
			state, rvms = ev.State, ev.RVMs
			if ev.VMID != st.vm || ev.ID != img.ID {
				t.Fatalf("%s: answer %+v", st.describe, ev)
			}
		} else {
			ev := h.mustRelease(img.ID, st.vm, nil)
			state, rvms = ev.State, ev.RVMs
			if ev.Saved || ev.VMID != st.vm {
				t.Fatalf("%s: answer %+v", st.describe, ev)
			}
		}
		got := h.mustShow(img.ID)
		if State(state) != st.state || rvms != st.rvms || State(got.State) != st.state || got.RVMs != st.rvms || !slices.Equal(got.VMs, st.vms) {
			t.Fatalf("%s: answer %s/%d, record %s rvms %d vms %v; want %s/%d %v", st.describe, state, rvms, got.State, got.RVMs, got.VMs, st.state, st.rvms, st.vms)
		}
	}
	want := []string{"->LOCKED", "LOCKED->READY", "READY->USED", "USED->READY", "READY->USED"}
	h.wantStates(img.ID, want...)
	// Each change of the holders is also an image-updated with the record.
	h.rec.Wait(t, "image-updated with VMs 1 and 2", func(m *nats.Msg) bool {
		var u schemas.Image
		return m.Subject == "slipway.evt.catalog.image-updated.0" && jsonOK(m.Data, &u) && slices.Equal(u.VMs, []int64{1, 2}) && u.RVMs == 2
	})
	// While used, the image cannot be deleted or disabled.
	_, f := h.waitFailed(h.command(schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: img.ID}))
	if f.Error != "image 0 is USED by 1 VM: it cannot be deleted while VMs use it" {
		t.Fatalf("delete of a used image: %q", f.Error)
	}
}

func TestUsePersistentOneVMAtATime(t *testing.T) {
	h := newHarness(t)
	img := h.ready(schemas.ImageCreate{Name: "pers", SizeMiB: 1, Persistent: true}, make([]byte, 4096))

	if ev := h.mustUse(img.ID, 5); State(ev.State) != StateUsedPers || ev.RVMs != 1 {
		t.Fatalf("first VM: %+v", ev)
	}
	_, err := h.use(img.ID, 6)
	want := "image 0 is persistent and in use by VM 5: a persistent image is used by one VM at a time; terminate that VM first or use a non-persistent image"
	if msg := refusalOf(t, err); msg != want {
		t.Fatalf("second VM: %q, want %q", msg, want)
	}
	// The refusal is the failed event of the image, caused by the command.
	var ce *bus.CallError
	errors.As(err, &ce)
	if ce.Msg.Subject != "slipway.evt.catalog.failed.0" {
		t.Fatalf("refusal on %s", ce.Msg.Subject)
	}
	if ev := h.mustUse(img.ID, 5); State(ev.State) != StateUsedPers || ev.RVMs != 1 {
		t.Fatalf("VM 5 again: %+v", ev)
	}
	if got := h.mustShow(img.ID); !slices.Equal(got.VMs, []int64{5}) {
		t.Fatalf("vms %v", got.VMs)
	}
	// Nor may the image change its persistence under the VM.
	_, f := h.waitFailed(h.command(schemas.CommandCatalogImageNonpersistent, schemas.ImageRef{ID: img.ID}))
	if f.Error != "image 0 is USED_PERS by VM 5: it cannot be made non-persistent while VMs use it" {
		t.Fatalf("nonpersistent: %q", f.Error)
	}
	if ev := h.mustRelease(img.ID, 6, nil); State(ev.State) != StateUsedPers || ev.RVMs != 1 {
		t.Fatalf("a VM that does not hold it releases: %+v", ev)
	}
	if ev := h.mustRelease(img.ID, 5, nil); State(ev.State) != StateReady || ev.RVMs != 0 {
		t.Fatalf("release: %+v", ev)
	}
	if ev := h.mustUse(img.ID, 6); State(ev.State) != StateUsedPers {
		t.Fatalf("VM 6 after VM 5 is gone: %+v", ev)
	}
	want2 := []string{"->LOCKED", "LOCKED->READY", "READY->USED_PERS", "USED_PERS->READY", "READY->USED_PERS"}
	h.wantStates(img.ID, want2...)
}

// Two catalog replicas, each handling several commands at once: VMs racing
// for a persistent image, and for a shared one.
func TestUseRaces(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Concurrency = 4 })
	h.start() // a second replica on the same bus and buckets
	pers := h.ready(schemas.ImageCreate{Name: "pers", SizeMiB: 1, Persistent: true}, make([]byte, 1024))
	shared := h.ready(schemas.ImageCreate{Name: "shared", SizeMiB: 1}, make([]byte, 1024))

	const n = 8
	type result struct {
		vm  int64
		err error
	}
	race := func(id int64) []result {
		var wg sync.WaitGroup
		out := make([]result, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vm := int64(100 + i)
				_, err := h.use(id, vm)
				out[i] = result{vm, err}
			}()
		}
		wg.Wait()
		return out
	}

	var winners []int64
	var refusals []string
	for _, r := range race(pers.ID) {
		if r.err == nil {
			winners = append(winners, r.vm)
		} else {
			refusals = append(refusals, refusalOf(t, r.err))
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d VMs got the persistent image (%v), want exactly 1; refusals %q", len(winners), winners, refusals)
	}
	for _, msg := range refusals {
		if !strings.Contains(msg, fmt.Sprintf("in use by VM %d", winners[0])) {
			t.Errorf("refusal %q does not name the winner VM %d", msg, winners[0])
		}
	}
	if got := h.mustShow(pers.ID); State(got.State) != StateUsedPers || !slices.Equal(got.VMs, winners) || got.RVMs != 1 {
		t.Fatalf("persistent image after the race: %s %v rvms %d", got.State, got.VMs, got.RVMs)
	}

	for _, r := range race(shared.ID) {
		if r.err != nil {
			t.Fatalf("VM %d on a shared image: %v", r.vm, r.err)
		}
	}
	got := h.mustShow(shared.ID)
	vms := slices.Sorted(slices.Values(got.VMs))
	if State(got.State) != StateUsed || got.RVMs != n || len(slices.Compact(vms)) != n || vms[0] != 100 || vms[n-1] != 100+n-1 {
		t.Fatalf("shared image after the race: %s rvms %d vms %v", got.State, got.RVMs, got.VMs)
	}
	// Releases racing too: READY once all are gone, one state change.
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.release(shared.ID, int64(100+i), nil); err != nil {
				t.Errorf("release VM %d: %v", 100+i, err)
			}
		}()
	}
	wg.Wait()
	if got := h.mustShow(shared.ID); State(got.State) != StateReady || got.RVMs != 0 || len(got.VMs) != 0 {
		t.Fatalf("shared image after the releases: %s rvms %d vms %v", got.State, got.RVMs, got.VMs)
	}
	want := []string{"->LOCKED", "LOCKED->READY", "READY->USED", "USED->READY"}
	h.wantStates(shared.ID, want...)
}

func TestUseRefusals(t *testing.T) {
	h := newHarness(t)
	disabled := h.ready(schemas.ImageCreate{Name: "off", SizeMiB: 1}, make([]byte, 1024))
	h.command(schemas.CommandCatalogImageDisable, schemas.ImageRef{ID: disabled.ID})
	h.waitState(disabled.ID, StateDisabled)

	locked := h.create(schemas.ImageCreate{Name: "importing", SizeMiB: 1}) // the converter never answers

	broken := h.create(schemas.ImageCreate{Name: "broken", SizeMiB: 1})
	cmd, _ := h.convertCommand(broken.ID)
	h.converterEvent(cmd, "failed", broken.ID, schemas.Failure{Code: schemas.CodeInvalidInput, ImageID: new(broken.ID), Phase: string(schemas.ConverterPhaseMkfs), Error: "mkfs.ext4 died"})
	h.waitState(broken.ID, StateError)

	deleting := h.ready(schemas.ImageCreate{Name: "going", SizeMiB: 1}, make([]byte, 1024))
	// A delete caught half way (its process died after the first step).
	if _, _, err := h.svc.images.Update(h.ctx, deleting.ID, func(i *schemas.Image) error { return transition(i, StateDelete) }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   int64
		want string
	}{
		{disabled.ID, "image 0 is DISABLED: enable it before a VM can use it"},
		{locked.ID, "image 1 is LOCKED (its data is still being written): a VM can use it once it is READY"},
		{broken.ID, "image 2 is in ERROR (mkfs: mkfs.ext4 died): no VM can use it; delete it and import it again"},
		{deleting.ID, "image 3 is being deleted: no VM can use it"},
		{42, "image 42 does not exist"},
	} {
		_, err := h.use(c.id, 7)
		if msg := refusalOf(t, err); msg != c.want {
			t.Errorf("use image %d: %q, want %q", c.id, msg, c.want)
		}
	}
	for _, id := range []int64{disabled.ID, locked.ID, broken.ID, deleting.ID} {
		if got := h.mustShow(id); got.RVMs != 0 || len(got.VMs) != 0 {
			t.Errorf("image %d after a refused use: rvms %d vms %v", id, got.RVMs, got.VMs)
		}
	}
	// A malformed command is refused by its schema.
	_, err := h.call(schemas.CommandCatalogImageUse, map[string]any{"id": 0}, EvtImageUsed)
	if msg := refusalOf(t, err); !strings.Contains(msg, "vm_id") {
		t.Errorf("use without vm_id: %q", msg)
	}
}

func TestUseFileImagesAreNotLocked(t *testing.T) {
	h := newHarness(t)
	kernel := h.ready(schemas.ImageCreate{Name: "vmlinuz", Type: schemas.ImageTypeKernel, Datastore: "files",
		Path: "https://example.invalid/vmlinuz"}, []byte("a kernel"))
	for _, vm := range []int64{1, 2} {
		ev := h.mustUse(kernel.ID, vm)
		if State(ev.State) != StateReady || ev.RVMs != 0 {
			t.Fatalf("VM %d uses a kernel: %+v", vm, ev)
		}
	}
	if got := h.mustShow(kernel.ID); State(got.State) != StateReady || got.RVMs != 0 || len(got.VMs) != 0 {
		t.Fatalf("kernel after use: %+v", got)
	}
	if ev := h.mustRelease(kernel.ID, 1, nil); State(ev.State) != StateReady || ev.Saved {
		t.Fatalf("release a kernel: %+v", ev)
	}
	h.wantStates(kernel.ID, []string{"->LOCKED", "LOCKED->READY"}...)
	h.command(schemas.CommandCatalogImageDisable, schemas.ImageRef{ID: kernel.ID})
	h.waitState(kernel.ID, StateDisabled)
	if _, err := h.use(kernel.ID, 3); refusalOf(t, err) != "image 0 is DISABLED: enable it before a VM can use it" {
		t.Fatalf("a disabled kernel: %v", err)
	}
}

// stage stores a VM's disk in the upload bucket and describes it.
func (h *harness) stage(key string, data []byte, format schemas.DiskFormat) *schemas.ImageSave {
	h.t.Helper()
	u := "s3://" + h.cfg.UploadBucket + "/" + key
	h.put(u, data)
	return &schemas.ImageSave{Source: u, Format: format, Size: int64(len(data)), VirtualSize: 1 << 20, SHA256: sha(data)}
}

func TestReleaseSavesPersistentChanges(t *testing.T) {
	h := newHarness(t)
	orig := bytes.Repeat([]byte("original "), 1000)
	img := h.ready(schemas.ImageCreate{Name: "db", SizeMiB: 1, Persistent: true}, orig)
	if !inAttempt(img.Source, 0, "disk.raw") {
		t.Fatalf("source %s", img.Source)
	}
	h.mustUse(img.ID, 7)

	// The VM wrote; the launcher staged the disk as qcow2.
	changed := bytes.Repeat([]byte("changed by VM 7 "), 5000)
	save := h.stage("vms/7/disk-0.qcow2", changed, schemas.DiskFormatQcow2)
	ev := h.mustRelease(img.ID, 7, save)
	if !ev.Saved || State(ev.State) != StateReady || ev.RVMs != 0 {
		t.Fatalf("release with save: %+v", ev)
	}
	got := h.mustShow(img.ID)
	wantSource := "s3://" + h.cfg.Datastores[0].Bucket + "/images/0/disk.qcow2"
	if got.Source != wantSource || got.Format != schemas.DiskFormatQcow2 || got.SHA256 != sha(changed) ||
		got.StoredSize != int64(len(changed)) || got.Size != 1<<20 || State(got.State) != StateReady || len(got.VMs) != 0 {
		t.Fatalf("image after the save: %+v", got)
	}
	if !bytes.Equal(h.read(got.Source), changed) {
		t.Fatal("the image's blob does not hold the saved disk")
	}
	if h.exists(img.Source) || h.exists(save.Source) {
		t.Fatalf("left behind: old blob %v, staged disk %v", h.exists(img.Source), h.exists(save.Source))
	}
	want := []string{"->LOCKED", "LOCKED->READY", "READY->USED_PERS", "USED_PERS->LOCKED_USED_PERS", "LOCKED_USED_PERS->READY"}
	h.wantStates(img.ID, want...)
	updated := h.rec.Wait(t, "image-updated after the save", func(m *nats.Msg) bool {
		return m.Subject == "slipway.evt.catalog.image-updated.0" && bytes.Contains(m.Data, []byte(sha(changed)))
	})
	if updated == nil {
		t.Fatal("no image-updated")
	}
	// The launcher, unsure, sends the release again: it is answered, and
	// says the image holds the disk.
	if ev := h.mustRelease(img.ID, 7, save); !ev.Saved || State(ev.State) != StateReady {
		t.Fatalf("release again: %+v", ev)
	}

	// Second round, same format: the blob is overwritten in place.
	h.mustUse(img.ID, 8)
	again := bytes.Repeat([]byte("VM 8 was here "), 3000)
	save = h.stage("vms/8/disk-0.qcow2", again, schemas.DiskFormatQcow2)
	if ev := h.mustRelease(img.ID, 8, save); !ev.Saved {
		t.Fatalf("second save: %+v", ev)
	}
	if got := h.mustShow(img.ID); got.Source != wantSource || got.SHA256 != sha(again) || !bytes.Equal(h.read(wantSource), again) {
		t.Fatalf("after the second save: %+v", got)
	}
	if keys, err := h.blobs.List(h.ctx, h.cfg.Datastores[0].Bucket, "images/0/"); err != nil || !slices.Equal(keys, []string{"images/0/disk.qcow2"}) {
		t.Fatalf("image blobs %v (%v)", keys, err)
	}
	if keys, err := h.blobs.List(h.ctx, h.cfg.UploadBucket, ""); err != nil || len(keys) != 0 {
		t.Fatalf("upload bucket holds %v (%v)", keys, err)
	}
}

func TestReleaseSaveRefusals(t *testing.T) {
	h := newHarness(t)
	orig := []byte("the original disk")
	pers := h.ready(schemas.ImageCreate{Name: "pers", SizeMiB: 1, Persistent: true}, orig)
	shared := h.ready(schemas.ImageCreate{Name: "shared", SizeMiB: 1}, orig)
	h.mustUse(pers.ID, 7)
	h.mustUse(shared.ID, 7)

	bad := h.stage("vms/7/disk-1.raw", []byte("what the VM wrote"), schemas.DiskFormatRaw)
	bad.SHA256 = sha([]byte("something else"))
	_, err := h.release(pers.ID, 7, bad)
	want := fmt.Sprintf("image 0: the saved disk %s has SHA-256 %s, but %s was reported; nothing was saved and VM 7 still holds the image",
		bad.Source, sha([]byte("what the VM wrote")), bad.SHA256)
	if msg := refusalOf(t, err); msg != want {
		t.Fatalf("bad digest: %q, want %q", msg, want)
	}
	got := h.mustShow(pers.ID)
	if State(got.State) != StateUsedPers || !slices.Equal(got.VMs, []int64{7}) || got.SHA256 != sha(orig) || !bytes.Equal(h.read(got.Source), orig) {
		t.Fatalf("image after a refused save: %+v", got)
	}
	if h.exists(bad.Source) {
		t.Error("the refused staged disk was left behind")
	}
	wantStates := []string{"->LOCKED", "LOCKED->READY", "READY->USED_PERS", "USED_PERS->LOCKED_USED_PERS", "LOCKED_USED_PERS->USED_PERS"}
	h.wantStates(pers.ID, wantStates...)

	short := h.stage("vms/7/disk-2.raw", []byte("abc"), schemas.DiskFormatRaw)
	short.Size = 4
	if _, err := h.release(pers.ID, 7, short); !strings.Contains(refusalOf(t, err), "has 3 bytes, but 4 were reported") {
		t.Fatalf("bad size: %v", err)
	}
	missing := &schemas.ImageSave{Source: "s3://" + h.cfg.UploadBucket + "/vms/7/disk-3.raw", Format: schemas.DiskFormatRaw, Size: 1, SHA256: sha(nil)}
	if _, err := h.release(pers.ID, 7, missing); !strings.Contains(refusalOf(t, err), "the saved disk "+missing.Source+" does not exist") {
		t.Fatalf("missing staged disk: %v", err)
	}
	elsewhere := &schemas.ImageSave{Source: shared.Source, Format: schemas.DiskFormatRaw, Size: 1, SHA256: sha(nil)}
	if _, err := h.release(pers.ID, 7, elsewhere); !strings.Contains(refusalOf(t, err), "a saved disk is s3://"+h.cfg.UploadBucket+"/vms/7/disk-<disk>.<format>") {
		t.Fatalf("save from outside the upload bucket: %v", err)
	}
	if !h.exists(elsewhere.Source) {
		t.Fatal("a refused save deleted another image's blob")
	}
	// Nor another upload, nor another VM's saved disk: each stays.
	for _, key := range []string{"uploads/6f1c/disk.raw", "vms/8/disk-0.raw", "kernels/6f1c/vmlinuz"} {
		other := h.stage(key, []byte("x"), schemas.DiskFormatRaw)
		if _, err := h.release(pers.ID, 7, other); !strings.Contains(refusalOf(t, err), "staged by the launcher for VM 7") {
			t.Fatalf("save of %s: %v", key, err)
		}
		if !h.exists(other.Source) {
			t.Fatalf("a refused save deleted %s", other.Source)
		}
	}
	nonpers := h.stage("vms/7/disk-4.raw", []byte("x"), schemas.DiskFormatRaw)
	if _, err := h.release(shared.ID, 7, nonpers); refusalOf(t, err) != "image 1 is not persistent: a VM's changes to it are discarded, there is nothing to save (release it without save)" {
		t.Fatalf("save on a shared image: %v", err)
	}
	if h.exists(nonpers.Source) {
		t.Error("the refused staged disk was left behind")
	}
	// The locks are intact: plain releases still work.
	if ev := h.mustRelease(pers.ID, 7, nil); State(ev.State) != StateReady {
		t.Fatalf("release: %+v", ev)
	}
	if ev := h.mustRelease(shared.ID, 7, nil); State(ev.State) != StateReady {
		t.Fatalf("release: %+v", ev)
	}
}
