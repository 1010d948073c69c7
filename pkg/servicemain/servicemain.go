// Package servicemain is the shared body of every Slipway service binary:
// configuration from the environment, telemetry, the S3 store, the bus
// connection and its streams, the service itself and a health endpoint, all
// stopped cleanly on SIGINT/SIGTERM. A service's cmd/<name>/main.go only
// says how to build the service from these.
//
// Environment: SLIPWAY_NATS_URL (default nats://127.0.0.1:4222),
// SLIPWAY_NATS_CREDS (the service's NATS credentials file, package
// identity; empty for a server without authentication), SLIPWAY_CA (a PEM
// file of the CAs trusted for NATS and S3 over TLS instead of the system's;
// package tlsca), SLIPWAY_PREFIX (default slipway), the S3 variables of
// blob.ConfigFromEnv (no default key: SLIPWAY_S3_KEYS_FILE, the service's
// own keys written by `slipway s3 provision`),
// SLIPWAY_HEALTH_ADDR (health endpoint, off when empty), SLIPWAY_LOG_LEVEL,
// SLIPWAY_LOG_FORMAT and the OTEL_* variables.
package servicemain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/telemetry"
	"github.com/slipway/slipway/schemas"
)

// EnvCA names the CA file every service and the CLI trust for NATS and S3
// over TLS.
const EnvCA = "SLIPWAY_CA"

// Service is what a binary runs until its context ends.
type Service interface {
	Run(ctx context.Context) error
}

// readier is a Service that says when it is serving; health reports
// "starting" until then. Services without it are healthy at once.
type readier interface {
	Ready() <-chan struct{}
}

// Deps are what a service is built from. Store is nil for a service built
// with WithoutS3. Logger is the process's: a service adds its own name.
type Deps struct {
	Bus    *bus.Bus
	Store  *blob.Store
	Logger *slog.Logger
	// Stack is zero in a service's own binary; a stack running every
	// service in one process (`slipway up`) sets it.
	Stack Stack
}

// Stack is what a stack running every service in one process decides for
// all of them. It replaces only what belongs to the stack; everything else
// a service reads from the environment as its binary does.
type Stack struct {
	// DataDir holds the stack's files. A service keeps its own files under
	// it where its variable does not say otherwise (see Path, WorkDir).
	DataDir string
	// Guard, when not nil, replaces SLIPWAY_FETCH_ALLOW's policy of the
	// services that fetch.
	Guard *netguard.Policy
	// User, when set, owns what the services create.
	User string
}

// Path is name under the stack's data directory, "" without a stack: a
// binary has no default for it.
func (s Stack) Path(name string) string {
	if s.DataDir == "" {
		return ""
	}
	return filepath.Join(s.DataDir, name)
}

// UserOr is the stack's user, else u (the one the service read from its
// environment).
func (s Stack) UserOr(u string) string {
	if s.User != "" {
		return s.User
	}
	return u
}

// GuardOr is the stack's guard of outbound fetches, else g (the one the
// service read from SLIPWAY_FETCH_ALLOW).
func (s Stack) GuardOr(g *netguard.Policy) *netguard.Policy {
	if s.Guard != nil {
		return s.Guard
	}
	return g
}

// WorkDir is a worker's scratch directory: dir when its variable set it,
// else the stack's DataDir/work (rather than /tmp, often a small tmpfs),
// else "" (the worker's default).
func (s Stack) WorkDir(dir string) string {
	if dir != "" {
		return dir
	}
	return s.Path("work")
}

// Wire makes the service from its dependencies; it reads the service's
// own configuration from the environment. Each service exports one, used
// by its binary (Main), by `slipway up` and by tests alike, so that every
// way of running a service reads the same variables.
type Wire func(d Deps) (Service, error)

type options struct{ noS3 bool }

// Option tunes Main.
type Option func(*options)

// WithoutS3 is for services that keep no image data.
func WithoutS3() Option { return func(o *options) { o.noS3 = true } }

// Main runs the service named name as the process's only job and exits.
func Main(name string, wire Wire, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	run.Main(name, func(ctx context.Context) error { return serve(ctx, name, wire, o) })
}

func serve(ctx context.Context, name string, wire Wire, o options) error {
	shutdown, err := telemetry.Setup(ctx, name)
	if err != nil {
		return err
	}
	defer func() { _ = shutdown(context.WithoutCancel(ctx)) }()

	d := Deps{Logger: slog.Default()}
	ca := run.Env(EnvCA, "")
	if !o.noS3 {
		s3, err := blob.ConfigFromEnv()
		if err != nil {
			return err
		}
		s3.CAFile = ca
		if d.Store, err = blob.New(s3); err != nil {
			return err
		}
	}
	d.Bus, err = bus.Connect(ctx, bus.Config{
		URL:         run.Env("SLIPWAY_NATS_URL", "nats://127.0.0.1:4222"),
		Prefix:      run.Env("SLIPWAY_PREFIX", bus.DefaultPrefix),
		Service:     name,
		Credentials: run.Env("SLIPWAY_NATS_CREDS", ""),
		CAFile:      ca,
		Logger:      d.Logger,
	})
	if err != nil {
		return err
	}
	defer d.Bus.Close()
	// The catalog sets the streams up; the others find them so (and may
	// not create them where NATS authenticates).
	setup := d.Bus.AwaitStreams
	if schemas.JetStreamOf(name).SetsUp {
		setup = d.Bus.Setup
	}
	if err := setup(ctx); err != nil {
		return err
	}
	svc, err := wire(d)
	if err != nil {
		return err
	}
	return runWithHealth(ctx, name, svc)
}

// runWithHealth runs svc beside the health endpoint of SLIPWAY_HEALTH_ADDR.
func runWithHealth(ctx context.Context, name string, svc Service) error {
	var health run.Health
	g := run.NewGroup(ctx)
	g.Go(name, svc.Run)
	if r, ok := svc.(readier); ok {
		health.Set(name, errors.New("starting"))
		g.Go("ready", func(ctx context.Context) error {
			select {
			case <-r.Ready():
				health.Set(name, nil)
			case <-ctx.Done():
			}
			return nil
		})
	} else {
		health.Set(name, nil)
	}
	g.Go("health", func(ctx context.Context) error {
		if err := run.ServeHealth(ctx, run.Env(run.HealthAddrEnv, ""), &health); err != nil {
			return fmt.Errorf("health endpoint: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// ServiceLogger is d.Logger (slog.Default() when nil) naming service, for
// services whose logger does not say its name itself.
func (d Deps) ServiceLogger(service string) *slog.Logger {
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	return log.With("service", service)
}
