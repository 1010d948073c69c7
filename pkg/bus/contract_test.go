package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/schemas"
)

// TestUndescribedMessagesAreRefused: a command or an event the contract has
// no schema for never reaches the bus, as a query without schemas is never
// served or asked.
func TestUndescribedMessagesAreRefused(t *testing.T) {
	srv := startServer(t)
	catalog := newBus(t, srv, "catalog")
	ctx := testCtx(t)
	seen := newRecorder()
	sub, err := catalog.Conn().Subscribe(catalog.Prefix()+".>", func(m *nats.Msg) { seen.add(&Msg{Subject: m.Subject}) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	for _, tc := range []struct {
		name string
		send func() error
		want string
	}{
		{"command of no service", func() error { _, err := catalog.Command(ctx, "nobody", "run", nil); return err }, "nobody.run has no schema (cmd/nobody.run.json)"},
		{"unknown verb", func() error { _, err := catalog.Command(ctx, "catalog", "image-explode", nil); return err }, "catalog.image-explode has no schema (cmd/catalog.image-explode.json)"},
		{"an event as a command", func() error { _, err := catalog.Command(ctx, "catalog", "image-created", nil); return err }, "(cmd/catalog.image-created.json)"},
		{"unknown event", func() error { _, err := catalog.Event(ctx, "image-exploded", "1", nil); return err }, "catalog.image-exploded has no schema (evt/catalog.image-exploded.json)"},
		{"another service's event", func() error { _, err := catalog.Event(ctx, "converted", "1", nil); return err }, "(evt/catalog.converted.json)"},
		{"call", func() error {
			_, err := catalog.Call(ctx, "catalog", "image-explode", nil, []string{"image-exploded"})
			return err
		}, "catalog.image-explode has no schema"},
	} {
		err := tc.send()
		if !errors.Is(err, schemas.ErrUnknownMessage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrUnknownMessage saying %q", tc.name, err, tc.want)
		}
	}
	// A described message goes out, and the refused ones did not.
	if _, err := catalog.Command(ctx, "catalog", "image-enable", schemas.ImageRef{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if m := <-seen.ch; m.Subject != catalog.CommandSubject("catalog", "image-enable") {
		t.Errorf("first message on the bus: %s, want only the described command", m.Subject)
	}
}

// TestDescriptors: the generated descriptors carry a message's names and
// types, so a caller asks, sends and invokes without spelling them.
func TestDescriptors(t *testing.T) {
	ctx, srv := testCtx(t), startServer(t)
	catalog, cli := newBus(t, srv, "catalog"), newBus(t, srv, "cli")
	serveCatalog(t, catalog)

	one := int64(1)
	img, err := Ask(ctx, cli, schemas.QryCatalogShow, schemas.CatalogShowRequest{ID: &one})
	if err != nil || img.Name != "alpine" {
		t.Fatalf("ask show: %v, %+v", err, img)
	}
	list, err := Ask(ctx, cli, schemas.QryCatalogList, schemas.CatalogListRequest{})
	if err != nil || len(list) != 1 || list[0].ID != 1 {
		t.Fatalf("ask list: %v, %+v", err, list)
	}
	two := int64(2)
	if _, err := Ask(ctx, cli, schemas.QryCatalogShow, schemas.CatalogShowRequest{ID: &two}); !IsNotFound(err) {
		t.Fatalf("ask a missing image: %v", err)
	}

	// The catalog answers image-use with image-used, as the schema declares.
	if got := schemas.CmdCatalogImageUse.Answers; len(got) != 1 || got[0] != schemas.EventCatalogImageUsed {
		t.Fatalf("image-use answers %v", got)
	}
	consume(t, catalog, func(ctx context.Context, m *Msg) error {
		var req schemas.ImageUse
		if err := m.Decode(&req); err != nil {
			return Terminal(err)
		}
		_, err := catalog.Event(ctx, schemas.EventCatalogImageUsed, "1", schemas.ImageUsed{ID: req.ID, VMID: req.VMID}, CausedBy(m.Envelope))
		return err
	})
	m, err := Invoke(ctx, cli, schemas.CmdCatalogImageUse, schemas.ImageUse{ID: 1, VMID: 9})
	if err != nil || m.Name != schemas.EventCatalogImageUsed || m.Subject != schemas.EvtCatalogImageUsed.Subject(cli.Prefix(), "1") {
		t.Fatalf("invoke image-use: %v, %+v", err, m)
	}
	// A command no event answers is sent, not invoked.
	if _, err := Invoke(ctx, cli, schemas.CmdCryptoLUKSSecretDelete, schemas.CryptoLuksSecretDelete{}); err == nil || !strings.Contains(err.Error(), "no event answers it") {
		t.Fatalf("invoke secret-delete: %v", err)
	}
	env, err := Send(ctx, cli, schemas.CmdCatalogImageEnable, schemas.ImageRef{ID: 1})
	if err != nil || env.DataSchema != schemas.ID(schemas.KindCommand, "catalog", "image-enable") {
		t.Fatalf("send image-enable: %v, %+v", err, env)
	}
}

// TestDescriptorSubjects: the descriptors build the subjects the bus uses.
func TestDescriptorSubjects(t *testing.T) {
	b := &Bus{cfg: Config{Prefix: "it-1", Sender: "alice"}}
	for _, c := range []struct{ got, want string }{
		{schemas.CmdCatalogImageCreate.Subject("it-1", "alice"), "it-1.cmd.catalog.image-create.alice"},
		{schemas.CmdCatalogImageCreate.Subject("it-1", "alice"), b.CommandSubject("catalog", "image-create")},
		{schemas.CmdCatalogImageCreate.Filter("it-1") + ".alice", b.CommandSubject("catalog", "image-create")},
		{schemas.EvtCatalogImageCreated.Subject("it-1", "7"), b.EventSubject("catalog", "image-created", "7")},
		{schemas.EvtCatalogImageCreated.Filter("it-1"), "it-1.evt.catalog.image-created.*"},
		{schemas.QryCatalogShow.Subject("it-1", "alice"), b.QuerySubject("catalog", "show")},
		{schemas.Sender(b.QuerySubject("catalog", "show")), "alice"},
	} {
		if c.got != c.want {
			t.Errorf("subject %q, want %q", c.got, c.want)
		}
	}
}

// TestAnswer: Answer serves an endpoint with the contract's types, the
// request decoded for the handler, and ByIDOrName words what a query naming
// one thing by ID or by name did not find.
func TestAnswer(t *testing.T) {
	ctx, srv := testCtx(t), startServer(t)
	catalog, cli := newBus(t, srv, "catalog"), newBus(t, srv, "cli")
	errMissing := errors.New("missing")
	byID := func(id int64) (schemas.Image, error) {
		if id != 1 {
			return schemas.Image{}, errMissing
		}
		return alpine(1), nil
	}
	byName := func(name string) (schemas.Image, error) {
		if name != "alpine" {
			return schemas.Image{}, fmt.Errorf("lookup %q: %w", name, errMissing)
		}
		return alpine(1), nil
	}
	svc, err := catalog.Serve("1.2.3", "image registry", Endpoints(
		Answer(schemas.QryCatalogShow, func(_ context.Context, r schemas.CatalogShowRequest) (schemas.Image, error) {
			return ByIDOrName("image", r.ID, r.Name, byID, byName, errMissing)
		}),
		Answer(schemas.QryCatalogList, func(context.Context, schemas.CatalogListRequest) (schemas.CatalogListReply, error) {
			return schemas.CatalogListReply{alpine(1)}, nil
		}),
	))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })

	one, two := int64(1), int64(2)
	if img, err := Ask(ctx, cli, schemas.QryCatalogShow, schemas.CatalogShowRequest{Name: "alpine"}); err != nil || img.ID != 1 {
		t.Fatalf("show by name: %v, %+v", err, img)
	}
	if list, err := Ask(ctx, cli, schemas.QryCatalogList, schemas.CatalogListRequest{}); err != nil || len(list) != 1 {
		t.Fatalf("list: %v, %+v", err, list)
	}
	for _, tc := range []struct {
		req  schemas.CatalogShowRequest
		want string
	}{
		{schemas.CatalogShowRequest{ID: &two}, "image 2 does not exist"},
		{schemas.CatalogShowRequest{Name: "debian"}, `no image is named "debian"`},
	} {
		_, err := Ask(ctx, cli, schemas.QryCatalogShow, tc.req)
		if !IsNotFound(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("show %+v: %v, want not found saying %q", tc.req, err, tc.want)
		}
	}
	// The schema refuses these before the handler runs; a caller of
	// ByIDOrName still gets them right.
	if _, err := ByIDOrName("image", &one, "alpine", byID, byName, errMissing); ErrorCode(err) != CodeInvalid || err.Error() != "give id or name, not both" {
		t.Errorf("both: %v", err)
	}
	if _, err := ByIDOrName("image", nil, "", byID, byName, errMissing); ErrorCode(err) != CodeInvalid || err.Error() != "give the id or the name of the image" {
		t.Errorf("neither: %v", err)
	}
}
