// Package worker is the skeleton every Slipway worker (the converter, the
// builder, crypto-luks, the kernel registry) stands on, written once: the
// configuration, its defaults and the variables it is read from (a
// service's Config embeds Config), the claim of a scratch directory
// (package workdir), the command consumer with its ack wait, deliveries,
// concurrency and job deadline, the query service with a generic `jobs`
// endpoint over the jobs in flight (package jobs), progress reporting, the
// way a job's outcome becomes the command's fate (Settle, and PhasedJobs
// for the workers whose jobs store an image's blob in phases), and the
// Ready channel.
//
// In the style of go-containerregistry, a service hands in small pieces and
// the core fills in the rest: a Spec (name, command handler, its own query
// endpoints, an optional Start hook for what else it opens), a Tracker for
// its job type (anything with a progress snapshot and a status row), and a
// Settlement per job (how to publish success, how to classify, clean up and
// report a failure). Services keep their domain: phases, error
// classification, payloads and events.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/defaults"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/pkg/workdir"
)

// Defaults of Config.
const (
	DefaultProgressInterval = time.Second
	DefaultAckWait          = 30 * time.Second
	DefaultMaxDeliver       = 10
)

// Config is what every worker tunes the same way; each service's Config
// embeds it. The zero value works.
type Config struct {
	// TempDir holds the jobs' working files; default os.TempDir(), made
	// absolute (the tools a job runs are only given absolute paths). The
	// worker claims its own directory under it (see Dir).
	TempDir string
	// Concurrency is how many jobs run at once; default 1.
	Concurrency int
	// ProgressInterval is the least time between two progress events of a
	// job; default DefaultProgressInterval (1s).
	ProgressInterval time.Duration
	// AckWait and MaxDeliver tune the command consumer; defaults
	// DefaultAckWait (30s) and DefaultMaxDeliver (10).
	AckWait    time.Duration
	MaxDeliver int
	// JobDeadline bounds each job's wall-clock time, heartbeats or not;
	// default bus.DefaultJobDeadline (6h); JobDeadlineFromEnv reads
	// bus.EnvJobDeadline.
	JobDeadline time.Duration
	// Logger defaults to the bus's logger.
	Logger *slog.Logger
}

// WithDefaults returns c with every zero field set to its default; the
// logger stays nil (New takes the bus's).
func (c Config) WithDefaults() Config {
	c.TempDir = defaults.Path(c.TempDir, os.TempDir)
	defaults.Fill(&c, Config{Concurrency: 1, ProgressInterval: DefaultProgressInterval,
		AckWait: DefaultAckWait, MaxDeliver: DefaultMaxDeliver, JobDeadline: bus.DefaultJobDeadline})
	return c
}

// Environment variables every worker reads the same way (ConfigFromEnv).
const (
	EnvTempDir          = "SLIPWAY_TMPDIR"
	EnvProgressInterval = "SLIPWAY_PROGRESS_INTERVAL"
)

// ConfigFromEnv reads what every worker reads the same way: EnvTempDir,
// concurrencyVar (the worker's own; default 1), EnvProgressInterval (a Go
// duration) and bus.EnvJobDeadline. Unset variables keep the defaults;
// the error names every variable that is wrong.
func ConfigFromEnv(concurrencyVar string) (Config, error) {
	var env run.EnvReader
	c := Config{TempDir: run.Env(EnvTempDir, ""), Concurrency: env.Int(concurrencyVar, 1),
		ProgressInterval: env.Duration(EnvProgressInterval, DefaultProgressInterval)}
	var err error
	c.JobDeadline, err = JobDeadlineFromEnv()
	env.Check(err)
	return c, env.Err()
}

// JobDeadlineFromEnv reads bus.EnvJobDeadline (a Go duration), default
// bus.DefaultJobDeadline.
func JobDeadlineFromEnv() (time.Duration, error) {
	return run.EnvDuration(bus.EnvJobDeadline, bus.DefaultJobDeadline)
}

// ApplyDeps sets what a worker takes from its wiring (a service's Wire):
// the stack's work directory as TempDir's default, and the service's
// logger.
func (c *Config) ApplyDeps(d servicemain.Deps, service string) {
	c.TempDir = d.Stack.WorkDir(c.TempDir)
	c.Logger = d.ServiceLogger(service)
}

// Spec is what a service tells the skeleton about itself.
type Spec struct {
	// Name is the service's name: the bus's service, the prefix of its
	// scratch directory (slipway-<Name>-) and of its errors.
	Name string
	// Version and Description are the micro service's; Version defaults
	// to 0.0.0.
	Version, Description string
	// Handle handles one command (bus.ConsumeCommands).
	Handle bus.Handler
	// Queries are the service's own query endpoints; Jobs, when set, adds
	// "jobs". Every endpoint needs its schemas (see bus.Serve).
	Queries map[string]bus.QueryHandler
	// Jobs lists the jobs in flight for the "jobs" endpoint; usually a
	// *Tracker.
	Jobs Lister
	// Start, when set, runs once the scratch directory is claimed and
	// before commands are consumed: what else the service opens (a store,
	// an event consumer). The returned stop, when not nil, runs after the
	// command consumer has stopped. An error while ctx has ended is a stop
	// while starting, not a failure.
	Start func(ctx context.Context, dir string) (stop func(), err error)
	// Running returns the service's own attributes of the "<name>
	// running" log line, after the scratch directory and the concurrency.
	Running func() []any
}

// Lister answers a `jobs` query: the reply's "jobs" array.
type Lister interface {
	List() any
}

// Worker runs one service's skeleton.
type Worker struct {
	bus   *bus.Bus
	cfg   Config
	spec  Spec
	log   *slog.Logger
	dir   string
	ready chan struct{}
	once  sync.Once
}

// New returns a worker for spec on b; cfg's zero fields get their defaults.
func New(b *bus.Bus, cfg Config, spec Spec) *Worker {
	cfg = cfg.WithDefaults()
	log := cfg.Logger
	if log == nil {
		log = b.Logger()
	}
	cfg.Logger = log
	if spec.Version == "" {
		spec.Version = "0.0.0"
	}
	return &Worker{bus: b, cfg: cfg, spec: spec, log: log, dir: cfg.TempDir, ready: make(chan struct{})}
}

// Config is the worker's configuration, defaults filled in.
func (w *Worker) Config() Config { return w.cfg }

// Bus is the bus the worker runs on.
func (w *Worker) Bus() *bus.Bus { return w.bus }

// Logger is the worker's logger.
func (w *Worker) Logger() *slog.Logger { return w.log }

// Dir is the worker's own scratch directory once Run has claimed it
// (Config().TempDir before), absolute: each job makes its own directory in
// it.
func (w *Worker) Dir() string { return w.dir }

// Ready is closed once the worker consumes commands and serves queries.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Run claims the scratch directory, runs Start, consumes commands and
// serves queries until ctx ends. Jobs in flight when it ends are abandoned
// and their commands redelivered later; Run returns after they stopped.
func (w *Worker) Run(ctx context.Context) error {
	name := w.spec.Name
	dir, release, err := workdir.Claim(w.cfg.TempDir, "slipway-"+name+"-")
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer release() // after the jobs in flight have stopped (defers run last-first)
	w.dir = dir
	if w.spec.Start != nil {
		stop, err := w.spec.Start(ctx, dir)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		if stop != nil {
			defer stop()
		}
	}
	cons, err := w.bus.ConsumeCommands(ctx, w.spec.Handle,
		bus.AckWait(w.cfg.AckWait), bus.MaxDeliver(w.cfg.MaxDeliver), bus.Concurrency(w.cfg.Concurrency),
		bus.JobDeadline(w.cfg.JobDeadline))
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("%s: consume commands: %w", name, err)
	}
	defer cons.Stop() // waits for the jobs in flight, whose context ctx ends too
	endpoints := maps.Clone(w.spec.Queries)
	if endpoints == nil {
		endpoints = map[string]bus.QueryHandler{}
	}
	if w.spec.Jobs != nil {
		endpoints["jobs"] = func(context.Context, []byte) (any, error) {
			return map[string]any{"jobs": w.spec.Jobs.List()}, nil
		}
	}
	svc, err := w.bus.Serve(w.spec.Version, w.spec.Description, endpoints)
	if err != nil {
		return fmt.Errorf("%s: serve queries: %w", name, err)
	}
	defer svc.Stop()
	attrs := []any{"temp_dir", dir, "concurrency", w.cfg.Concurrency}
	if w.spec.Running != nil {
		attrs = append(attrs, w.spec.Running()...)
	}
	w.log.Info(name+" running", attrs...)
	w.once.Do(func() { close(w.ready) })
	<-ctx.Done()
	return nil
}
