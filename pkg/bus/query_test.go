package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/slipway/slipway/schemas"
)

// alpine is a catalog image record that matches the Image schema.
func alpine(id int64) schemas.Image {
	return schemas.Image{ID: id, Name: "alpine", Datastore: "default", Type: schemas.ImageTypeOS,
		State: schemas.ImageStateReady, Format: schemas.DiskFormatQcow2,
		Source:    fmt.Sprintf("s3://slipway-default/images/%d/disk.qcow2", id),
		CreatedAt: "2025-01-15T10:04:05Z", UpdatedAt: "2025-01-15T10:04:05Z"}
}

// serveCatalog answers the catalog's show, list and datastores queries from
// a one-image catalog; datastores fails.
func serveCatalog(t *testing.T, catalog *Bus) {
	t.Helper()
	svc, err := catalog.Serve("1.2.3", "image registry", map[string]QueryHandler{
		"show": func(_ context.Context, req []byte) (any, error) {
			var q schemas.CatalogShowRequest
			if err := DecodeQuery(req, &q); err != nil {
				return nil, err
			}
			if q.ID == nil || *q.ID != 1 {
				return nil, NotFound(fmt.Errorf("image %v does not exist", q))
			}
			return alpine(1), nil
		},
		"list": func(_ context.Context, req []byte) (any, error) {
			if len(req) != 0 && string(req) != "{}" {
				return nil, Invalid(errors.New("no request body expected"))
			}
			return schemas.CatalogListReply{alpine(1)}, nil
		},
		"datastores": func(context.Context, []byte) (any, error) { return nil, errors.New("kv unavailable") },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
}

func TestServeAndQuery(t *testing.T) {
	srv := startServer(t)
	catalog := newBus(t, srv, "catalog")
	cli := newBus(t, srv, "cli")
	ctx := testCtx(t)
	serveCatalog(t, catalog)

	var img schemas.Image
	if err := cli.Query(ctx, "catalog", "show", map[string]int{"id": 1}, &img); err != nil || img.Name != "alpine" {
		t.Fatalf("show: %v %+v", err, img)
	}
	var list schemas.CatalogListReply
	if err := cli.Query(ctx, "catalog", "list", nil, &list); err != nil || len(list) != 1 {
		t.Fatalf("list: %v %+v", err, list)
	}

	err := cli.Query(ctx, "catalog", "show", map[string]int{"id": 9}, &img)
	var qe *QueryError
	if !errors.As(err, &qe) || qe.Code != "404" || !strings.Contains(qe.Description, "does not exist") || !IsNotFound(err) {
		t.Fatalf("missing image: %v", err)
	}
	err = cli.Query(ctx, "catalog", "show", []byte("{"), nil)
	if ErrorCode(err) != "400" || !strings.Contains(err.Error(), "malformed JSON") {
		t.Fatalf("bad request: %v", err)
	}
	if err := cli.Query(ctx, "catalog", "datastores", nil, nil); ErrorCode(err) != "500" || !strings.Contains(err.Error(), "kv unavailable") {
		t.Fatalf("internal error: %v", err)
	}
	if err := cli.Query(ctx, "converter", "jobs", nil, nil); ErrorCode(err) != CodeUnavailable {
		t.Fatalf("no service: %v", err)
	}

	// The service is discoverable the micro way, each endpoint naming its schemas.
	reply, err := cli.Conn().Request("$SRV.PING.catalog", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ping micro.Ping
	if err := json.Unmarshal(reply.Data, &ping); err != nil || ping.Name != "catalog" || ping.Version != "1.2.3" {
		t.Fatalf("ping %s: %v", reply.Data, err)
	}
	reply, err = cli.Conn().Request("$SRV.INFO.catalog", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(reply.Data, &info); err != nil || len(info.Endpoints) != 3 {
		t.Fatalf("info %s: %v", reply.Data, err)
	}
	for _, ep := range info.Endpoints {
		if ep.Subject != "slipway.api.catalog."+ep.Name+".*" {
			t.Fatalf("endpoint %s on %s", ep.Name, ep.Subject)
		}
		if ep.Metadata["request_schema"] != schemas.ID(schemas.KindQuery, "catalog", ep.Name) ||
			ep.Metadata["reply_schema"] != schemas.ID(schemas.KindReply, "catalog", ep.Name) {
			t.Errorf("endpoint %s metadata %v", ep.Name, ep.Metadata)
		}
	}
}

// TestServeRefusesEndpointsWithoutSchemas: a service cannot answer a query
// the contract does not describe.
func TestServeRefusesEndpointsWithoutSchemas(t *testing.T) {
	srv := startServer(t)
	catalog := newBus(t, srv, "catalog")
	ok := func(context.Context, []byte) (any, error) { return nil, nil }
	svc, err := catalog.Serve("1.0.0", "image registry", map[string]QueryHandler{"show": ok, "image-show": ok, "boom": ok})
	if err == nil {
		_ = svc.Stop()
		t.Fatal("Serve accepted endpoints without schemas")
	}
	for _, want := range []string{"catalog.image-show", "catalog.boom", "qry/catalog.boom.json", "rpl/catalog.boom.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if !errors.Is(err, schemas.ErrUnknownMessage) {
		t.Errorf("error %v does not match schemas.ErrUnknownMessage", err)
	}
	// Nothing was served: the valid endpoint did not go up alone.
	cli := newBus(t, srv, "cli")
	if err := cli.Query(testCtx(t), "catalog", "show", map[string]int{"id": 1}, nil); ErrorCode(err) != CodeUnavailable {
		t.Errorf("show after a refused Serve: %v", err)
	}
	// A service name without any query is refused too.
	other := newBus(t, srv, "nobody")
	if _, err := other.Serve("1.0.0", "", map[string]QueryHandler{"list": ok}); err == nil || !strings.Contains(err.Error(), "nobody.list") {
		t.Errorf("nobody.list: %v", err)
	}
	// And the client does not ask a query that has no schemas.
	if err := cli.Query(testCtx(t), "catalog", "image-show", nil, nil); !errors.Is(err, schemas.ErrUnknownMessage) {
		t.Errorf("query without schemas: %v", err)
	}
}

// TestQueryRequestValidation: a request that breaks its schema gets 400
// naming the query, the field and the problem, and never reaches the handler.
func TestQueryRequestValidation(t *testing.T) {
	srv := startServer(t)
	catalog := newBus(t, srv, "catalog")
	cli := newBus(t, srv, "cli")
	ctx := testCtx(t)
	var mu sync.Mutex
	var seen []string
	svc, err := catalog.Serve("1.0.0", "", map[string]QueryHandler{
		"show": func(_ context.Context, req []byte) (any, error) {
			mu.Lock()
			seen = append(seen, string(req))
			mu.Unlock()
			return alpine(1), nil
		},
		"list": func(_ context.Context, req []byte) (any, error) {
			mu.Lock()
			seen = append(seen, string(req))
			mu.Unlock()
			return schemas.CatalogListReply{}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()

	for _, tc := range []struct {
		endpoint string
		req      any
		want     string
	}{
		{"show", map[string]string{"id": "1"}, "catalog.show: /id: must be integer, not string"},
		{"show", map[string]any{"id": 1, "name": "alpine"}, "catalog.show: give only one of /id, /name"},
		{"show", nil, "catalog.show: one of these must hold: /id is required, or /name is required"},
		{"show", map[string]any{"id": 1, "nmae": "x"}, "catalog.show: /nmae: is not allowed (unknown property)"},
		{"list", map[string]string{"state": "HAPPY"}, `catalog.list: /state: is "HAPPY", must be one of`},
		{"list", []byte("[]"), "catalog.list: must be object, not array"},
	} {
		err := cli.Query(ctx, "catalog", tc.endpoint, tc.req, nil)
		if ErrorCode(err) != CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want 400 with %q", tc.endpoint, tc.req, err, tc.want)
		}
	}
	mu.Lock()
	if len(seen) != 0 {
		t.Errorf("invalid requests reached the handler: %q", seen)
	}
	mu.Unlock()

	// An empty body is the empty request, and is handed over as it came.
	if err := cli.Query(ctx, "catalog", "list", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := cli.Query(ctx, "catalog", "list", []byte("  \n"), nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "" || seen[1] != "  \n" {
		t.Errorf("handler saw %q", seen)
	}
}

// TestQueryReplyValidatedByTheServer: a handler whose reply breaks its schema
// is a bug: the asker gets 500, never the reply, and the service logs it.
func TestQueryReplyValidatedByTheServer(t *testing.T) {
	srv := startServer(t)
	var logged bytes.Buffer
	var logMu sync.Mutex
	catalog, err := Connect(testCtx(t), Config{URL: srv.ClientURL(), Service: "catalog",
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &logMu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(catalog.Close)
	cli := newBus(t, srv, "cli")
	ctx := testCtx(t)
	bad := alpine(1)
	bad.Source = "/etc/passwd"
	svc, err := catalog.Serve("1.0.0", "", map[string]QueryHandler{
		"show": func(context.Context, []byte) (any, error) { return bad, nil },
		// A nil slice is JSON null, not the empty list the schema asks for.
		"list": func(context.Context, []byte) (any, error) { return schemas.CatalogListReply(nil), nil },
		// Raw bytes are checked too.
		"datastores": func(context.Context, []byte) (any, error) { return []byte(`[{"name":"default"}]`), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()

	var img schemas.Image
	err = cli.Query(ctx, "catalog", "show", map[string]int{"id": 1}, &img)
	if ErrorCode(err) != CodeInternal || !strings.Contains(err.Error(), `catalog.show: /source: "/etc/passwd" does not match`) {
		t.Errorf("bad reply: %v", err)
	}
	if img.Name != "" {
		t.Errorf("the bad reply was decoded: %+v", img)
	}
	if err := cli.Query(ctx, "catalog", "list", nil, nil); ErrorCode(err) != CodeInternal || !strings.Contains(err.Error(), "must be array, not null") {
		t.Errorf("null list: %v", err)
	}
	if err := cli.Query(ctx, "catalog", "datastores", nil, nil); ErrorCode(err) != CodeInternal || !strings.Contains(err.Error(), "/0/bucket: is required") {
		t.Errorf("raw reply: %v", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if n := strings.Count(logged.String(), "query reply refused"); n != 3 || !strings.Contains(logged.String(), "slipway.api.catalog.show") {
		t.Errorf("%d refusals logged:\n%s", n, logged.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestQueryRefusesForgedReplies: whoever answers on a query's subject (here
// a plain subscription, not a micro service) cannot get a reply past the
// client that breaks the reply schema; resp stays untouched.
func TestQueryRefusesForgedReplies(t *testing.T) {
	srv := startServer(t)
	forger := newBus(t, srv, "forger")
	cli := newBus(t, srv, "cli")
	ctx := testCtx(t)
	good, _ := json.Marshal(alpine(1))
	replies := map[string]struct {
		body []byte
		want string
	}{
		"source":    {bytes.Replace(good, []byte(`s3://slipway-default/images/1/disk.qcow2`), []byte(`/var/lib/slipway/../../etc/shadow`), 1), `catalog.show: /source: "/var/lib/slipway/../../etc/shadow" does not match`},
		"string id": {bytes.Replace(good, []byte(`"id":1`), []byte(`"id":"1"`), 1), "catalog.show: /id: must be integer, not string"},
		"extra":     {bytes.Replace(good, []byte(`{`), []byte(`{"cmdline":"rm -rf /",`), 1), "catalog.show: /cmdline: is not allowed (unknown property)"},
		"not json":  {[]byte(`<html>`), "catalog.show: malformed JSON"},
		"empty":     {nil, "catalog.show: malformed JSON"},
	}
	for name, r := range replies {
		t.Run(name, func(t *testing.T) {
			sub, err := forger.Conn().Subscribe("slipway.api.catalog.show.*", func(m *nats.Msg) { _ = m.Respond(r.body) })
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := forger.Conn().Flush(); err != nil {
				t.Fatal(err)
			}
			img := schemas.Image{Name: "untouched"}
			err = cli.Query(ctx, "catalog", "show", map[string]int{"id": 1}, &img)
			if err == nil || !strings.Contains(err.Error(), r.want) || !strings.Contains(err.Error(), "query slipway.api.catalog.show.cli: reply refused") {
				t.Fatalf("forged reply: %v, want %q", err, r.want)
			}
			if !errors.Is(err, schemas.ErrInvalid) && !errors.Is(err, schemas.ErrMalformed) {
				t.Errorf("%v matches neither schemas.ErrInvalid nor schemas.ErrMalformed", err)
			}
			if ErrorCode(err) != "" {
				t.Errorf("a refused reply has code %q", ErrorCode(err))
			}
			if img.Name != "untouched" || img.ID != 0 || img.Source != "" {
				t.Errorf("resp was filled: %+v", img)
			}
		})
	}
	// The same forger answering a valid record gets through: the check is the
	// schema, not who answers (that is NATS's permissions' job).
	sub, err := forger.Conn().Subscribe("slipway.api.catalog.show.*", func(m *nats.Msg) { _ = m.Respond(good) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// Flush the last subtest's unsubscribe and this subscription: a request
	// routed to a subscription the forger already dropped gets no answer.
	if err := forger.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	var img schemas.Image
	if err := cli.Query(ctx, "catalog", "show", map[string]int{"id": 1}, &img); err != nil || img.ID != 1 {
		t.Errorf("valid reply: %v %+v", err, img)
	}
}
