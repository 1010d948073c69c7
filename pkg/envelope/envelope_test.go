package envelope

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

func TestStepIDDeterministic(t *testing.T) {
	a := StepID("saga-1", "convert")
	if a != StepID("saga-1", "convert") {
		t.Fatal("StepID is not deterministic")
	}
	if len(a) != 32 {
		t.Fatalf("StepID length %d, want 32", len(a))
	}
	if b := StepID("saga-1", "convert2"); a == b {
		t.Fatal("different steps share an ID")
	}
	// Expected value computed independently: sha256("a/b")[:32 hex].
	if got, want := StepID("a", "b"), "c14cddc033f64b9dea80ea675cf280a0"; got != want {
		t.Fatalf("StepID(a,b) = %s, want %s", got, want)
	}
}

func TestNames(t *testing.T) {
	if got := Type("catalog", "image-create"); got != "io.slipway.catalog.image-create.v1" {
		t.Errorf("Type = %s", got)
	}
	if got := DataSchema("evt", "converter", "converted"); got != "https://slipway.dev/schemas/evt/converter.converted.json" {
		t.Errorf("DataSchema = %s", got)
	}
	if a, b := NewID(), NewID(); a == b || len(a) != 36 {
		t.Error("NewID is not a random UUID")
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	in := Envelope{
		ID: "id-1", Type: Type("catalog", "image-create"), Source: "/slipway/cli", Subject: "42",
		DataSchema: DataSchema("cmd", "catalog", "image-create"), DataContentType: ContentTypeJSON,
		Time:          time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		CorrelationID: "saga", CausationID: "parent",
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "a=b",
	}
	h := in.Header()
	if h.Get(nats.MsgIdHdr) != "id-1" || h.Get(HeaderSpecVersion) != "1.0" {
		t.Fatalf("header lacks Nats-Msg-Id or specversion: %v", h)
	}
	if h.Get(HeaderTime) != "2026-01-02T03:04:05.000006Z" {
		t.Fatalf("ce-time = %q", h.Get(HeaderTime))
	}
	out, err := FromHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestFromHeaderCaseInsensitive(t *testing.T) {
	h := nats.Header{"Ce-Id": {"x"}, "Ce-Type": {"t"}, "Ce-Source": {"/s"}, "Ce-Specversion": {"1.0"}}
	e, err := FromHeader(h)
	if err != nil || e.ID != "x" || e.Type != "t" {
		t.Fatalf("got %+v, %v", e, err)
	}
}

func TestFromHeaderErrors(t *testing.T) {
	if _, err := FromHeader(nats.Header{"Nats-Msg-Id": {"x"}}); !errors.Is(err, ErrNoEnvelope) {
		t.Fatalf("no ce headers: err = %v, want ErrNoEnvelope", err)
	}
	if _, err := FromHeader(nil); !errors.Is(err, ErrNoEnvelope) {
		t.Fatalf("nil header: err = %v", err)
	}
	full := Envelope{ID: "1", Type: "t", Source: "/s"}.Header()
	for _, missing := range []string{HeaderID, HeaderType, HeaderSource, HeaderSpecVersion} {
		h := nats.Header{}
		for k, v := range full {
			if k != missing {
				h[k] = v
			}
		}
		_, err := FromHeader(h)
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("without %s: err = %v, want one naming it", missing, err)
		}
	}
	h := Envelope{ID: "1", Type: "t", Source: "/s"}.Header()
	h.Set(HeaderSpecVersion, "0.3")
	if _, err := FromHeader(h); err == nil || !strings.Contains(err.Error(), "0.3") {
		t.Errorf("specversion 0.3: err = %v", err)
	}
	h = Envelope{ID: "1", Type: "t", Source: "/s"}.Header()
	h.Set(HeaderTime, "yesterday")
	if _, err := FromHeader(h); err == nil || !strings.Contains(err.Error(), HeaderTime) {
		t.Errorf("bad time: err = %v", err)
	}
}

func TestTraceInjectExtract(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	var e Envelope
	e.InjectTrace(ctx)
	if e.TraceParent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("traceparent = %q", e.TraceParent)
	}
	got := trace.SpanContextFromContext(e.ExtractTrace(context.Background()))
	if got.TraceID() != tid || got.SpanID() != sid || !got.IsRemote() {
		t.Fatalf("extracted %+v", got)
	}

	var none Envelope
	none.InjectTrace(context.Background())
	if none.TraceParent != "" {
		t.Fatalf("traceparent without a span: %q", none.TraceParent)
	}
}
