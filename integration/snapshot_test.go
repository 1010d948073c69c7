package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// Image snapshots end to end: the real catalog and converter, qemu-img and
// the CLI. A persistent image gets its snapshots the way a VM gives them
// (image-release with save, sent here as the launcher sends it); then the
// CLI reverts, deletes and flattens, and the blob is checked with qemu-io.

// snapQcow2 makes a qcow2 of size bytes whose first 64 KiB hold 'a' in
// snapshot "sa", 'b' in snapshot "sb" and 'c' now; fill bytes of random
// data after the first MiB give the converter real work.
func snapQcow2(t *testing.T, size, fill int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "snap.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", p, fmt.Sprint(size))
	if fill > 0 {
		raw := filepath.Join(t.TempDir(), "fill.raw")
		writeRandomRaw(t, raw, 2*fill)
		qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, p)
	}
	testenv.PatternSnapshots(t, p)
	return p
}

// blobState downloads an image's blob and returns its state and the names
// of its internal snapshots.
func (s *stack) blobState(t *testing.T, url string) (string, string) {
	t.Helper()
	local := filepath.Join(t.TempDir(), "blob.qcow2")
	s.download(url, local)
	out := qemuImg(t, "snapshot", "-l", local)
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] != "ID" && f[0] != "Snapshot" {
			names = append(names, f[1])
		}
	}
	return testenv.PatternState(t, local), strings.Join(names, ",")
}

// persistentWithSnapshots makes a persistent DATABLOCK and gives it the
// qcow2 at disk with the tree sa ← sb (active), as a VM's EPILOG does.
func (s *stack) persistentWithSnapshots(t *testing.T, name, disk string) int64 {
	t.Helper()
	id, out, code := s.create("--name", name, "--type", "DATABLOCK", "--size", "4", "--persistent")
	if code != 0 {
		t.Fatalf("create: %s", out)
	}
	launcher := s.connect(schemas.ServiceLauncher)
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	vm := int64(40)
	if _, err := launcher.Call(ctx, schemas.ServiceCatalog, schemas.CommandCatalogImageUse, schemas.ImageUse{ID: id, VMID: vm}, []string{schemas.EventCatalogImageUsed}); err != nil {
		t.Fatal(err)
	}
	info := testenv.Upload(t, ctx, s.store, disk, blob.DefaultUploadBucket, blob.SavedDiskKey(vm, 0, "qcow2"))
	at := time.Now().UTC().Format(time.RFC3339)
	save := &schemas.ImageSave{Source: info.URL(), Format: schemas.DiskFormatQcow2, Size: info.Size, VirtualSize: 4 << 20, SHA256: info.SHA256,
		Snapshots: []schemas.ImageSnapshot{{ID: 0, Name: "sa", Parent: -1, Date: at}, {ID: 1, Name: "sb", Parent: 0, Active: true, Date: at}}}
	m, err := launcher.Call(ctx, schemas.ServiceCatalog, schemas.CommandCatalogImageRelease, schemas.ImageRelease{ID: id, VMID: vm, Save: save}, []string{schemas.EventCatalogImageReleased})
	if err != nil {
		t.Fatal(err)
	}
	var rel schemas.ImageReleased
	if err := m.Decode(&rel); err != nil || !rel.Saved {
		t.Fatalf("release with save: %+v %v", rel, err)
	}
	return id
}

func TestImageSnapshotsEndToEnd(t *testing.T) {
	testenv.Program(t, "qemu-img", "apt-get install qemu-utils")
	testenv.Program(t, "qemu-io", "apt-get install qemu-utils")
	s := newStack(t, stackOptions{})
	id := s.persistentWithSnapshots(t, "db", snapQcow2(t, 4<<20, 0))
	ref := fmt.Sprint(id)

	out := s.mustSlipway("image", "snapshot-list", "db")
	if !strings.Contains(out, "sa") || !strings.Contains(out, "sb") || !strings.Contains(out, "ACTIVE") {
		t.Fatalf("snapshot-list:\n%s", out)
	}
	if show := s.mustSlipway("image", "show", ref); !strings.Contains(show, "IMAGE SNAPSHOTS") {
		t.Errorf("image show lists no snapshots:\n%s", show)
	}
	// Refusals, with their words, through the CLI.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "snapshot-delete", ref, "sb"}, "snapshot 1 (sb) is active"},
		{[]string{"image", "snapshot-delete", ref, "sa"}, "snapshot 0 (sa) has children (1)"},
		{[]string{"image", "snapshot-revert", ref, "nope"}, `no snapshot named "nope"`},
		{[]string{"image", "nonpersistent", ref}, "flatten first"},
	} {
		stdout, stderr, code := s.slipway(c.args...)
		if code == 0 || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("slipway %s: exit %d, %s%s; want %q", strings.Join(c.args, " "), code, stdout, stderr, c.want)
		}
	}

	steps := []struct {
		args         []string
		state, snaps string
	}{
		{[]string{"image", "snapshot-revert", ref, "sa"}, "a", "sa,sb"},
		{[]string{"image", "snapshot-delete", ref, "sb"}, "a", "sa"},
		{[]string{"image", "snapshot-flatten", ref, "0"}, "a", ""},
	}
	for _, st := range steps {
		before := s.show(id)
		out := s.mustSlipway(st.args...)
		img := s.show(id)
		sum, size := s.objectSHA256(img.Source)
		if img.State != "READY" || sum != img.SHA256 || size != img.StoredSize || img.Source == before.Source {
			t.Fatalf("%s: image %+v (blob sha256 %s, %d bytes)\n%s", st.args[1], img, sum, size, out)
		}
		state, snaps := s.blobState(t, img.Source)
		if state != st.state || snaps != st.snaps {
			t.Errorf("%s: the blob holds %q with snapshots %q, want %q and %q", st.args[1], state, snaps, st.state, st.snaps)
		}
		var names []string
		for _, sn := range img.Snapshots {
			names = append(names, sn.Name)
		}
		if strings.Join(names, ",") != st.snaps {
			t.Errorf("%s: the record's snapshots %v, the blob's %q", st.args[1], names, st.snaps)
		}
		for _, o := range s.objects() {
			if o == before.Source {
				t.Errorf("%s: the old blob %s is left", st.args[1], o)
			}
		}
	}
	s.mustSlipway("image", "nonpersistent", ref)
}

// TestImageSnapshotConverterKilled: the converter dies while it reverts
// a snapshot; the next one finishes the command, and the image ends READY
// with a blob that matches its record and tree.
func TestImageSnapshotConverterKilled(t *testing.T) {
	testenv.Program(t, "qemu-img", "apt-get install qemu-utils")
	testenv.Program(t, "qemu-io", "apt-get install qemu-utils")
	s := newStack(t, stackOptions{noConverter: true})
	bin := testenv.Build(t, "./services/converter/cmd/converter", false)
	workDir := t.TempDir()
	first := s.startConverterProcess(bin, workDir, "first")
	s.waitForService("converter")
	id := s.persistentWithSnapshots(t, "big", snapQcow2(t, 512<<20, 192<<20))

	progress := make(chan *nats.Msg, 256)
	sub, err := s.nc.ChanSubscribe("slipway.evt.converter.progress.>", progress)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	done := make(chan string, 1)
	go func() {
		out, errOut, code := s.slipway("image", "snapshot-revert", fmt.Sprint(id), "sa")
		done <- fmt.Sprintf("exit %d: %s%s", code, out, errOut)
	}()
	select { // the job has begun: any progress of it
	case m := <-progress:
		t.Logf("killing the converter at %s", m.Data)
	case <-time.After(2 * time.Minute):
		t.Fatal("no progress of the snapshot job")
	}
	if st := s.show(id).State; st != "LOCKED" {
		t.Errorf("image is %s while the converter works, want LOCKED", st)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	second := s.startConverterProcess(bin, workDir, "second")
	defer func() {
		_ = second.Process.Signal(syscall.SIGTERM)
		_ = second.Wait()
	}()
	select {
	case r := <-done:
		if !strings.HasPrefix(r, "exit 0") {
			t.Errorf("snapshot-revert: %s", r)
		}
	case <-time.After(5 * time.Minute):
		t.Fatal("snapshot-revert did not end")
	}
	img := s.waitSettled(id, time.Minute)
	sum, _ := s.objectSHA256(img.Source)
	if img.State != "READY" || sum != img.SHA256 {
		t.Fatalf("after the kill: %s, blob sha256 %s, record %s", img.State, sum, img.SHA256)
	}
	state, snaps := s.blobState(t, img.Source)
	if state != "a" || snaps != "sa,sb" || len(img.Snapshots) != 2 || !img.Snapshots[0].Active {
		t.Errorf("after the kill: blob %q snapshots %q, record %+v", state, snaps, img.Snapshots)
	}
	if n := s.incompleteUploads(); n != 0 {
		t.Errorf("%d incomplete multipart uploads left", n)
	}
}
