package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
)

type imageInfo struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

func TestServeAndQuery(t *testing.T) {
	srv := startServer(t)
	catalog := newBus(t, srv, "catalog")
	cli := newBus(t, srv, "cli")
	ctx := testCtx(t)

	svc, err := catalog.Serve("1.2.3", "image registry", map[string]QueryHandler{
		"image-show": func(_ context.Context, req []byte) (any, error) {
			var q struct {
				ID int `json:"id"`
			}
			if err := json.Unmarshal(req, &q); err != nil {
				return nil, Invalid(fmt.Errorf("request: %w", err))
			}
			if q.ID != 1 {
				return nil, NotFound(fmt.Errorf("image %d does not exist", q.ID))
			}
			return imageInfo{ID: 1, Name: "alpine"}, nil
		},
		"image-list": func(_ context.Context, req []byte) (any, error) {
			if len(req) != 0 {
				return nil, Invalid(errors.New("no request body expected"))
			}
			return []imageInfo{{ID: 1, Name: "alpine"}}, nil
		},
		"boom": func(context.Context, []byte) (any, error) { return nil, errors.New("kv unavailable") },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()

	var img imageInfo
	if err := cli.Query(ctx, "catalog", "image-show", map[string]int{"id": 1}, &img); err != nil || img.Name != "alpine" {
		t.Fatalf("image-show: %v %+v", err, img)
	}
	var list []imageInfo
	if err := cli.Query(ctx, "catalog", "image-list", nil, &list); err != nil || len(list) != 1 {
		t.Fatalf("image-list: %v %+v", err, list)
	}

	err = cli.Query(ctx, "catalog", "image-show", map[string]int{"id": 9}, &img)
	var qe *QueryError
	if !errors.As(err, &qe) || qe.Code != "404" || qe.Description != "image 9 does not exist" || !IsNotFound(err) {
		t.Fatalf("missing image: %v", err)
	}
	err = cli.Query(ctx, "catalog", "image-show", []byte("{"), nil)
	if ErrorCode(err) != "400" {
		t.Fatalf("bad request: %v", err)
	}
	if err := cli.Query(ctx, "catalog", "boom", nil, nil); ErrorCode(err) != "500" {
		t.Fatalf("internal error: %v", err)
	}
	if err := cli.Query(ctx, "converter", "status", nil, nil); ErrorCode(err) != CodeUnavailable {
		t.Fatalf("no service: %v", err)
	}

	// The service is discoverable the micro way.
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
		if ep.Subject != "slipway.api.catalog."+ep.Name {
			t.Fatalf("endpoint %s on %s", ep.Name, ep.Subject)
		}
	}
}
