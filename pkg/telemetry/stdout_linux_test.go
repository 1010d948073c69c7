//go:build linux

package telemetry

import (
	"context"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"go.opentelemetry.io/otel"
)

func TestConsoleExporterProducesSpans(t *testing.T) {
	clearOTel(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	prevProvider := otel.GetTracerProvider()
	defer otel.SetTracerProvider(prevProvider)

	// The console exporter writes to the os.Stdout of package init time:
	// redirect file descriptor 1 itself.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(w.Fd()), 1, 0); err != nil {
		t.Fatal(err)
	}
	restore := func() { _ = syscall.Dup3(saved, 1, 0); _ = syscall.Close(saved) }
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	shutdown, err := Setup(context.Background(), "converter")
	if err != nil {
		restore()
		t.Fatal(err)
	}
	_, span := Tracer("converter").Start(context.Background(), "convert-disk")
	valid := span.SpanContext().IsValid()
	span.End()
	err = shutdown(context.Background())
	restore()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	text := <-out
	if !valid {
		t.Fatal("span context invalid with export on")
	}
	for _, want := range []string{`"Name":"convert-disk"`, `{"Key":"service.name","Value":{"Type":"STRING","Value":"converter"}}`} {
		if !strings.Contains(text, want) {
			t.Fatalf("console output lacks %s:\n%s", want, text)
		}
	}
}
