// Package telemetry sets up OpenTelemetry tracing for a Slipway service.
//
// Export is off unless the standard OTEL_* variables ask for it, so a
// service costs nothing by default; the W3C trace-context propagator is
// always installed, so trace context still flows through the bus
// (traceparent headers) from callers that do trace.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Enabled reports whether the environment asks for trace export:
// OTEL_TRACES_EXPORTER set to something other than "none", or an OTLP
// endpoint configured (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). OTEL_SDK_DISABLED=true wins.
func Enabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	if exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp != "" {
		return exp != "none"
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the global propagator (TraceContext + Baggage) and, when
// Enabled, a global tracer provider exporting through the exporter the
// OTEL_* variables choose (otlp over http/protobuf by default, grpc,
// console, …), with service.name = service unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise. The returned shutdown flushes
// pending spans; it is a no-op when export is off.
func Setup(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	setPropagator()
	noop := func(context.Context) error { return nil }
	if !Enabled() {
		return noop, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return noop, fmt.Errorf("telemetry: trace exporter from OTEL_* variables: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithFromEnv(), // last, so OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return noop, fmt.Errorf("telemetry: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// Tracer returns the named tracer of the global provider; name it after
// the service or package that makes the spans.
func Tracer(service string) trace.Tracer {
	return otel.Tracer(service)
}

// InstallForTest makes exp (e.g. tracetest.NewInMemoryExporter()) receive
// every span synchronously, through a global provider, and installs the
// propagator. shutdown restores the previous global provider.
func InstallForTest(exp sdktrace.SpanExporter) (shutdown func()) {
	setPropagator()
	prev := otel.GetTracerProvider()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	return func() {
		_ = tp.Shutdown(context.Background())
		otel.SetTracerProvider(prev)
	}
}

func setPropagator() {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}
