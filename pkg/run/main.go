// Package run is the life cycle every Slipway binary shares: logging set up
// from the environment, a context cancelled by SIGINT/SIGTERM, a Group of
// long-running components that stop together, a health endpoint, and
// typed environment variables with errors that name the variable.
package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Environment variables read by Main.
const (
	LogLevelEnv  = "SLIPWAY_LOG_LEVEL"  // debug, info (default), warn, error
	LogFormatEnv = "SLIPWAY_LOG_FORMAT" // json (default) or text
)

// HealthcheckArg, as a program's only argument, makes Main probe the health
// endpoint of the running instance instead of running: it asks
// SLIPWAY_HEALTH_ADDR for /healthz and exits 0 when healthy, 1 otherwise.
// Container healthchecks then need no tool besides the binary itself.
const HealthcheckArg = "-healthcheck"

// healthcheckTimeout bounds one HealthcheckArg probe.
const healthcheckTimeout = 5 * time.Second

// Main runs fn as the whole program named name and exits: 0 when fn
// returns nil (or a context error after a shutdown signal), 1 when it fails
// or the logging variables are invalid. The first SIGINT or SIGTERM cancels
// fn's context for a graceful stop; a second one exits at once with 130.
// With HealthcheckArg as the only argument it probes instead (see there).
func Main(name string, fn func(ctx context.Context) error) {
	if len(os.Args) == 2 && os.Args[1] == HealthcheckArg {
		os.Exit(HealthcheckCode(name, os.Getenv(HealthAddrEnv), os.Stderr))
	}
	os.Exit(mainCode(name, fn, os.Stderr, func() { os.Exit(130) }))
}

// HealthcheckCode probes the health endpoint on addr (see CheckHealth) and
// returns the exit code of a healthcheck: 0 healthy, 1 not, with the
// reason on stderr.
func HealthcheckCode(name, addr string, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), healthcheckTimeout)
	defer cancel()
	if err := CheckHealth(ctx, addr); err != nil {
		fmt.Fprintf(stderr, "%s: unhealthy: %v\n", name, err)
		return 1
	}
	return 0
}

// mainCode is Main without the exit, so tests can drive it.
func mainCode(name string, fn func(ctx context.Context) error, stderr io.Writer, hardExit func()) int {
	logger, err := NewLogger(stderr, os.Getenv(LogLevelEnv), os.Getenv(LogFormatEnv))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	logger = logger.With("service", name)
	slog.SetDefault(logger)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case sig := <-sigs:
			logger.Info("shutting down", "signal", sig.String())
			cancel()
		case <-finished:
			return
		}
		select {
		case sig := <-sigs:
			logger.Error("second signal, exiting now", "signal", sig.String())
			hardExit()
		case <-finished:
		}
	}()

	err = fn(ctx)
	if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		logger.Error("exiting", "error", err)
		return 1
	}
	logger.Debug("stopped")
	return 0
}

// NewLogger builds a slog logger writing to w. level is debug, info, warn
// or error (empty: info); format is json or text (empty: json).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if level == "" {
		level = "info"
	}
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%s=%q: want debug, info, warn or error", LogLevelEnv, level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("%s=%q: want json or text", LogFormatEnv, format)
	}
}
