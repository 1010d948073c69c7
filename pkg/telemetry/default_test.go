package telemetry

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
)

// This file sorts first, so this test runs before any other installs a
// provider in this process.
func TestOffByDefault(t *testing.T) {
	clearOTel(t)
	before := otel.GetTracerProvider()
	shutdown, err := Setup(context.Background(), "catalog")
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	if otel.GetTracerProvider() != before {
		t.Fatal("Setup installed a tracer provider with export off")
	}
	_, span := Tracer("catalog").Start(context.Background(), "op")
	defer span.End()
	if span.SpanContext().IsValid() || span.IsRecording() {
		t.Fatal("span is recording with export off")
	}
	// The propagator is installed even so.
	fields := otel.GetTextMapPropagator().Fields()
	if !strings.Contains(strings.Join(fields, ","), "traceparent") || !strings.Contains(strings.Join(fields, ","), "baggage") {
		t.Fatalf("propagator fields %v", fields)
	}
}
