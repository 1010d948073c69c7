package testenv

import (
	"log/slog"
	"strings"
	"testing"
)

// Writer writes each line a logger writes to the test's log.
type Writer struct{ T testing.TB }

func (w Writer) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a line a service logs after the test ended
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Logger logs at level and above to the test's log.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(Writer{t}, &slog.HandlerOptions{Level: level}))
}
