package telemetry

import (
	"context"
	"os"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// clearOTel unsets every variable that could turn export on.
func clearOTel(t *testing.T) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, false},
	} {
		clearOTel(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		if got := Enabled(); got != tc.want {
			t.Errorf("Enabled() with %v = %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestUnknownExporterFails(t *testing.T) {
	clearOTel(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "carrier-pigeon")
	if _, err := Setup(context.Background(), "catalog"); err == nil || !strings.Contains(err.Error(), "OTEL_") {
		t.Fatalf("Setup = %v, want an error naming the variables", err)
	}
}

func TestInstallForTestAndPropagation(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	shutdown := InstallForTest(exp)
	defer shutdown()

	ctx, parent := Tracer("cli").Start(context.Background(), "image create")
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	parent.End()
	if !strings.HasPrefix(carrier["traceparent"], "00-"+parent.SpanContext().TraceID().String()) {
		t.Fatalf("traceparent %q", carrier["traceparent"])
	}

	// The other side of the bus.
	remote := otel.GetTextMapPropagator().Extract(context.Background(), carrier)
	_, child := Tracer("catalog").Start(remote, "handle image-create")
	child.End()

	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans exported, want 2", len(spans))
	}
	if spans[1].Parent.SpanID() != spans[0].SpanContext.SpanID() || spans[1].SpanContext.TraceID() != spans[0].SpanContext.TraceID() {
		t.Fatalf("child not linked to its parent: %+v", spans[1].Parent)
	}
}
