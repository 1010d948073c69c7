package catalog

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// dockerHarness adds to harness the two services a docker import waits
// for, played by the test, and a recorder of their commands.
type dockerHarness struct {
	*harness
	market, builder *bus.Bus
	cmds            *testenv.Recorder
}

func newDockerHarness(t *testing.T, mutate ...func(*Config)) *dockerHarness {
	h := newHarness(t, mutate...)
	return &dockerHarness{harness: h, market: h.connect(marketService), builder: h.connect(builderService),
		cmds: record(t, testenv.Dial(t, h.url), "slipway.cmd."+marketService+".>", "slipway.cmd."+builderService+".>")}
}

// command waits for the command verb of service about image id.
func (h *dockerHarness) commandFor(service, verb string, id int64, v any) *nats.Msg {
	h.t.Helper()
	rec := h.cmds
	if service == "converter" {
		rec = h.rec
	}
	m := rec.Wait(h.t, fmt.Sprintf("%s.%s for image %d", service, verb, id), func(m *nats.Msg) bool {
		var c struct {
			ImageID int64 `json:"image_id"`
		}
		return m.Subject == "slipway.cmd."+service+"."+verb+".catalog" && json.Unmarshal(m.Data, &c) == nil && c.ImageID == id
	})
	if err := schemas.Validate(schemas.KindCommand, service, verb, m.Data); err != nil {
		h.t.Fatalf("the catalog sent an invalid %s.%s: %v", service, verb, err)
	}
	mustJSON(h.t, m.Data, v)
	return m
}

// reply publishes an event of b caused by cmd, as a service does.
func (h *dockerHarness) reply(b *bus.Bus, cmd *nats.Msg, event string, id int64, data any) {
	h.t.Helper()
	cause, err := envelope.FromHeader(cmd.Header)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := b.Event(h.ctx, event, idToken(id), data, bus.CausedBy(cause)); err != nil {
		h.t.Fatal(err)
	}
}

// resolve plays market-dockerhub for image id.
func (h *dockerHarness) resolve(id int64, kind schemas.ContentKind) (*nats.Msg, schemas.MarketDockerhubResolved) {
	h.t.Helper()
	var c schemas.MarketDockerhubResolve
	cmd := h.commandFor(marketService, "resolve", id, &c)
	ev := schemas.MarketDockerhubResolved{ImageID: id, Reference: "registry.local:5000/team/app@" + testDigest,
		Digest: testDigest, Platform: "linux/amd64", Kind: kind, Size: 1234}
	h.reply(h.market, cmd, "resolved", id, ev)
	return cmd, ev
}

// build plays the builder for image id: it stores data at the command's
// dest and reports it built, in the command's format with a virtual size
// of virtual for a container filesystem, as it is for a carried disk.
func (h *dockerHarness) build(id int64, data []byte, virtual int64) (*nats.Msg, schemas.BuilderBuild, schemas.BuilderBuilt) {
	h.t.Helper()
	var c schemas.BuilderBuild
	cmd := h.commandFor(builderService, "build", id, &c)
	h.put(c.Dest, data)
	ev := schemas.BuilderBuilt{ImageID: id, Dest: c.Dest, Size: int64(len(data)), SHA256: sha(data), Digest: testDigest}
	if c.Kind == schemas.ContentKindContainer {
		ev.Format, ev.VirtualSize, ev.Distro = c.Format, virtual, "alpine"
		if ev.Format == "" {
			ev.Format = schemas.DiskFormatRaw
		}
	}
	h.reply(h.builder, cmd, "built", id, ev)
	return cmd, c, ev
}

// eventsSettled waits until the catalog has handled every event
// published so far: its durable consumer has nothing pending or unacked.
func (h *dockerHarness) eventsSettled() {
	h.t.Helper()
	js, err := jetstream.New(h.cli.Conn())
	if err != nil {
		h.t.Fatal(err)
	}
	cons, err := js.Consumer(h.ctx, h.cli.EventStream(), ServiceName)
	if err != nil {
		h.t.Fatal(err)
	}
	waitFor(h.t, "the catalog to handle every event", func() bool {
		info, err := cons.Info(h.ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

func TestDockerImportLifecycle(t *testing.T) {
	h := newDockerHarness(t)
	url := "docker://registry.local:5000/team/app:1.0?size=64&filesystem=xfs&format=qcow2&distro=Alpine&arch=arm64"
	env := h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "app", Path: url, Compression: schemas.CompressionZstd})
	var c schemas.MarketDockerhubResolve
	resolveCmd := h.commandFor(marketService, "resolve", 0, &c)
	img := h.mustShow(0)
	if c.URL != url || State(img.State) != StateLocked || img.Origin != url || img.Type != schemas.ImageTypeOS {
		t.Fatalf("resolve command %+v, image %+v", c, img)
	}
	if got := resolveCmd.Header.Get(envelope.HeaderCorrelationID); got != img.SagaID || got != env.CorrelationID {
		t.Fatalf("resolve correlation %q, saga %q", got, img.SagaID)
	}

	_, res := h.resolve(0, schemas.ContentKindContainer)
	// The builder writes the final qcow2 where the image's blob lives.
	stored := []byte(strings.Repeat("qcow2 of the build ", 100))
	bcmd, bc, built := h.build(0, stored, 64<<20)
	wantDest := "s3://" + h.cfg.Datastores[0].Bucket + "/images/0/" + img.SagaID + "/disk.qcow2"
	want := schemas.BuilderBuild{ImageID: 0, Reference: res.Reference, Kind: schemas.ContentKindContainer, SizeMiB: 64,
		Filesystem: schemas.FilesystemXFS, Distro: "alpine", Arch: "arm64",
		Format: schemas.DiskFormatQcow2, Compression: schemas.CompressionZstd, Dest: wantDest}
	if !reflect.DeepEqual(bc, want) {
		t.Fatalf("build command\n got %+v\nwant %+v", bc, want)
	}

	h.waitState(0, StateReady)
	got := h.mustShow(0)
	wantAttrs := map[string]string{AttrSourceReference: url, AttrSourceDigest: testDigest, AttrDistro: "alpine"}
	if State(got.State) != StateReady || got.Source != wantDest || got.Format != schemas.DiskFormatQcow2 ||
		got.Size != 64<<20 || got.StoredSize != int64(len(stored)) || got.SHA256 != sha(stored) ||
		!mapsEqual(got.Attributes, wantAttrs) {
		t.Fatalf("READY image = %+v", got)
	}
	waitFor(t, "the saga to succeed", func() bool {
		sg, err := h.svc.sagas.Get(h.ctx, got.SagaID)
		return err == nil && sg.Status == saga.StatusSucceeded &&
			slices.Equal(sg.Visited(), []saga.Phase{PhaseResolve, PhaseBuild, PhaseCommit})
	})
	// The same report again (another delivery) changes nothing.
	h.reply(h.builder, bcmd, "built", 0, built)
	h.eventsSettled()
	if again := h.mustShow(0); again.UpdatedAt != got.UpdatedAt || !h.exists(wantDest) {
		t.Fatalf("a duplicate built changed the image: %+v", again)
	}
	if n := len(h.rec.All(func(m *nats.Msg) bool { return strings.HasPrefix(m.Subject, "slipway.cmd.converter.") })); n != 0 {
		t.Fatalf("%d converter commands for a container image", n)
	}
	if got := stateChanges(h.rec, 0); !slices.Equal(got, []string{"->LOCKED", "LOCKED->READY"}) {
		t.Fatalf("state changes = %v", got)
	}
}

// A disk carried in an image is imported with its format detected, and
// a redelivered resolved event does not build twice.
func TestDockerImportCarriedDisk(t *testing.T) {
	h := newDockerHarness(t)
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "vm", Path: "docker://registry.local:5000/vms/debian?size=10", Format: schemas.DiskFormatQcow2})
	cmd, res := h.resolve(0, schemas.ContentKindDisk)
	var bc schemas.BuilderBuild
	h.commandFor(builderService, "build", 0, &bc)
	if bc.Kind != schemas.ContentKindDisk || bc.SizeMiB != 0 || bc.Filesystem != "" {
		t.Fatalf("build command for a disk = %+v", bc)
	}
	// The same report again (another delivery): one build command only,
	// since its ID is the saga step's.
	h.reply(h.market, cmd, "resolved", 0, res)
	h.put(bc.Dest, []byte("qcow2 disk"))
	h.reply(h.builder, cmd, "built", 0, schemas.BuilderBuilt{ImageID: 0, Dest: bc.Dest, Size: 10, SHA256: sha([]byte("qcow2 disk")), Digest: testDigest})
	_, conv := h.convertCommand(0)
	if conv.SourceFormat != "" || conv.Format != schemas.DiskFormatQcow2 {
		t.Fatalf("converter command for a carried disk = %+v", conv)
	}
	if n := len(h.cmds.All(func(m *nats.Msg) bool { return m.Subject == "slipway.cmd.builder.build.catalog" })); n != 1 {
		// A resend carries the same Nats-Msg-Id; core subscribers see it,
		// the stream keeps one. Both are acceptable only if identical.
		ids := map[string]bool{}
		for _, m := range h.cmds.All(func(m *nats.Msg) bool { return m.Subject == "slipway.cmd.builder.build.catalog" }) {
			ids[m.Header.Get("Nats-Msg-Id")] = true
		}
		if len(ids) != 1 {
			t.Fatalf("%d build commands with %d IDs", n, len(ids))
		}
	}
}

func TestDockerImportRefusals(t *testing.T) {
	h := newDockerHarness(t)
	for _, tc := range []struct {
		req  schemas.ImageCreate
		want string
	}{
		{schemas.ImageCreate{Name: "a", Path: "docker://Bad/Name"}, `image "Bad/Name"`},
		{schemas.ImageCreate{Name: "b", Path: "docker://nginx?filesystem=btrfs"}, "unsupported filesystem=btrfs"},
		{schemas.ImageCreate{Name: "c", Path: "docker://nginx?size=-3"}, "invalid size=-3"},
		{schemas.ImageCreate{Name: "d", Path: "docker://nginx?color=blue"}, `unknown docker URL option "color"`},
		{schemas.ImageCreate{Name: "e", Path: "docker://nginx?format=raw", Format: schemas.DiskFormatQcow2}, "conflicts with format=raw"},
		{schemas.ImageCreate{Name: "f", Path: "docker://nginx", Checksum: "sha256:" + strings.Repeat("0", 64)}, "pinned by its manifest digest"},
		{schemas.ImageCreate{Name: "g", Path: "docker://nginx", Datastore: "files", Type: schemas.ImageTypeKernel}, "not KERNEL"},
		{schemas.ImageCreate{Name: "h", Path: "docker://nginx", Compression: schemas.CompressionZstd}, "qcow2 only"},
	} {
		h.refused(tc.req, tc.want)
	}
	if imgs := h.list(); len(imgs) != 0 {
		t.Fatalf("refused creates made images: %+v", imgs)
	}
}

// refused sends req and checks the catalog refused it, saying want, with
// no image made.
func (h *dockerHarness) refused(req schemas.ImageCreate, want string) {
	h.t.Helper()
	env := h.command(schemas.CommandCatalogImageCreate, req)
	m, f := h.waitFailed(env)
	if !strings.Contains(f.Error, want) || f.ImageID != nil || !strings.Contains(m.Subject, ".failed.cmd-") {
		h.t.Errorf("%s (%s): failed %s = %+v, want %q", req.Name, req.Path, m.Subject, f, want)
	}
}

func (h *dockerHarness) list() []schemas.Image {
	h.t.Helper()
	var out []schemas.Image
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryCatalogList, struct{}{}, &out); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func TestDockerImportFailures(t *testing.T) {
	h := newDockerHarness(t)

	// 0: the registry does not know the tag.
	env := h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "nosuch", Path: "docker://registry.local:5000/team/app:nosuch"})
	var rc schemas.MarketDockerhubResolve
	cmd := h.commandFor(marketService, "resolve", 0, &rc)
	msg := "GET https://registry.local:5000/v2/team/app/manifests/nosuch: MANIFEST_UNKNOWN: manifest unknown; unknown tag=nosuch"
	h.reply(h.market, cmd, "failed", 0, schemas.Failure{Code: schemas.CodeSourceNotFound, ImageID: new(int64(0)), Error: msg})
	ev := h.waitState(0, StateError)
	if ev.Error != "resolve: "+msg {
		t.Fatalf("error = %q", ev.Error)
	}
	if _, f := h.waitFailed(env); f.ImageID == nil || *f.ImageID != 0 || !strings.Contains(f.Error, "MANIFEST_UNKNOWN") {
		t.Fatalf("failed = %+v", f)
	}

	// 1: the builder refuses a size too small; what it left is deleted.
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "small", Path: "docker://registry.local:5000/team/app?size=1"})
	h.resolve(1, schemas.ContentKindContainer)
	var bc schemas.BuilderBuild
	bcmd := h.commandFor(builderService, "build", 1, &bc)
	h.put(bc.Dest, []byte("partial"))
	tooSmall := "ext4 filesystem of 1 MiB is too small for the content: it needs at least 9 MiB (size=9)"
	h.reply(h.builder, bcmd, "failed", 1, schemas.Failure{Code: schemas.CodeTooLarge, ImageID: new(int64(1)), Phase: "mkfs", Error: tooSmall})
	if ev := h.waitState(1, StateError); ev.Error != "build (mkfs): "+tooSmall {
		t.Fatalf("error = %q", ev.Error)
	}
	waitFor(t, "compensation to delete the build", func() bool { return !h.exists(bc.Dest) })

	// 2: the converter refuses a carried disk: the build and the dest go.
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "conv", Path: "docker://registry.local:5000/team/app"})
	h.resolve(2, schemas.ContentKindDisk)
	_, _, built := h.build(2, []byte("not really a disk"), 0)
	ccmd, conv := h.convertCommand(2)
	h.put(conv.Dest, []byte("half"))
	h.converterEvent(ccmd, "failed", 2, schemas.Failure{Code: schemas.CodeInvalidInput, ImageID: new(int64(2)), Phase: string(schemas.ConverterPhaseInspect), Error: "raw: no filesystem"})
	if ev := h.waitState(2, StateError); ev.Error != "inspect: raw: no filesystem" {
		t.Fatalf("error = %q", ev.Error)
	}
	waitFor(t, "compensation to delete build and dest", func() bool { return !h.exists(built.Dest) && !h.exists(conv.Dest) })
	img := h.mustShow(2)
	waitFor(t, "the saga to be compensated", func() bool {
		sg, err := h.svc.sagas.Get(h.ctx, img.SagaID)
		return err == nil && sg.Status == saga.StatusFailed &&
			slices.Equal(sg.Compensated, []saga.Phase{PhaseConvert, PhaseBuild})
	})

	// 3: the builder pulled something else than what was resolved.
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "other", Path: "docker://registry.local:5000/team/app"})
	h.resolve(3, schemas.ContentKindContainer)
	bcmd = h.commandFor(builderService, "build", 3, &bc)
	h.put(bc.Dest, []byte("x"))
	other := "sha256:" + strings.Repeat("f", 64)
	h.reply(h.builder, bcmd, "built", 3, schemas.BuilderBuilt{ImageID: 3, Dest: bc.Dest, Format: "raw", Size: 1, SHA256: sha([]byte("x")), Digest: other})
	if ev := h.waitState(3, StateError); !strings.Contains(ev.Error, "the builder pulled "+other) {
		t.Fatalf("error = %q", ev.Error)
	}
	waitFor(t, "compensation to delete the build", func() bool { return !h.exists(bc.Dest) })

	// 4: a container build is the final blob, so it must be in the format
	// asked for: a raw one for a qcow2 image fails and is deleted.
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "fmt", Path: "docker://registry.local:5000/team/app?format=qcow2"})
	h.resolve(4, schemas.ContentKindContainer)
	bcmd = h.commandFor(builderService, "build", 4, &bc)
	if bc.Format != schemas.DiskFormatQcow2 || !inAttempt(bc.Dest, 4, "disk.qcow2") {
		t.Fatalf("build command = %+v", bc)
	}
	h.put(bc.Dest, []byte("raw"))
	h.reply(h.builder, bcmd, "built", 4, schemas.BuilderBuilt{ImageID: 4, Dest: bc.Dest, Format: "raw", VirtualSize: 3, Size: 3, SHA256: sha([]byte("raw")), Digest: testDigest})
	if ev := h.waitState(4, StateError); ev.Error != "the builder stored raw, but qcow2 was asked for" {
		t.Fatalf("error = %q", ev.Error)
	}
	waitFor(t, "compensation to delete the build", func() bool { return !h.exists(bc.Dest) })
}

func TestDockerImportBuildDeadline(t *testing.T) {
	h := newDockerHarness(t, func(c *Config) { c.BuildDeadline = 400 * time.Millisecond })
	url := "docker://registry.local:5000/team/app"
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "slow", Path: url})
	h.resolve(0, schemas.ContentKindContainer)
	var bc schemas.BuilderBuild
	bcmd := h.commandFor(builderService, "build", 0, &bc)
	ev := h.waitState(0, StateError)
	if ev.Error != "building a disk from "+url+" did not finish within 400ms" {
		t.Fatalf("error = %q", ev.Error)
	}
	// The builder finishes late: its disk has no owner and is deleted.
	h.put(bc.Dest, []byte("late"))
	h.reply(h.builder, bcmd, "built", 0, schemas.BuilderBuilt{ImageID: 0, Dest: bc.Dest, Format: "raw", Size: 4, SHA256: sha([]byte("late")), Digest: testDigest})
	waitFor(t, "the late build to be deleted", func() bool { return !h.exists(bc.Dest) })
	if got := h.mustShow(0); State(got.State) != StateError {
		t.Fatalf("a late build changed the image: %+v", got)
	}
	if n := len(h.rec.All(func(m *nats.Msg) bool { return strings.HasPrefix(m.Subject, "slipway.cmd.converter.") })); n != 0 {
		t.Fatalf("%d converter commands after the import failed", n)
	}
}
