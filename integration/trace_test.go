package integration

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/slipway/slipway/pkg/telemetry"
)

// TestOneImportOneTrace checks that one import yields one trace whose spans
// cover every service it passed through, carried across every hop by the
// envelope's traceparent.
func TestOneImportOneTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	shutdown := telemetry.InstallForTest(exp)
	defer shutdown()

	s := newStack(t, stackOptions{})
	raw := filepath.Join(t.TempDir(), "disk.raw")
	writeRandomRaw(t, raw, 8<<20)
	id, out, code := s.create("--name", "traced", "--path", raw, "--format", "qcow2")
	if code != 0 {
		t.Fatalf("create exited %d:\n%s", code, out)
	}
	if img := s.show(id); img.State != "READY" {
		t.Fatalf("state %s", img.State)
	}

	spans := exp.GetSpans()
	byTrace := map[trace.TraceID][]tracetest.SpanStub{}
	var createTrace trace.TraceID
	for _, sp := range spans {
		byTrace[sp.SpanContext.TraceID()] = append(byTrace[sp.SpanContext.TraceID()], sp)
		for _, a := range sp.Attributes {
			if a.Key == "messaging.destination.name" && strings.HasPrefix(a.Value.AsString(), "slipway.cmd.catalog.image-create.") {
				createTrace = sp.SpanContext.TraceID()
			}
		}
	}
	if !createTrace.IsValid() {
		t.Fatalf("no span published the image-create command among %d spans", len(spans))
	}
	services := map[string]int{}
	var names []string
	for _, sp := range byTrace[createTrace] {
		names = append(names, sp.Name)
		for _, a := range sp.Attributes {
			if a.Key == "slipway.service" {
				services[a.Value.AsString()]++
			}
		}
	}
	sort.Strings(names)
	t.Logf("trace %s: %d spans: %v", createTrace, len(names), names)
	for _, svc := range []string{"catalog", "converter"} {
		if services[svc] == 0 {
			t.Errorf("the import's trace has no span from %s (services seen: %v)", svc, services)
		}
	}
	// The converter's result comes back to the catalog within the same trace.
	if services["catalog"] < 2 {
		t.Errorf("catalog handled %d messages in the trace, want the command and the converter's event", services["catalog"])
	}
}
