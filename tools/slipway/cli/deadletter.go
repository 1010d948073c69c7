package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/run"
)

// deadLetterService is the bus name of `slipway dead-letter`.
const deadLetterService = "dead-letter"

// deadLetterHealthEvery is how often the forwarder's health endpoint
// re-reads the NATS connection state.
const deadLetterHealthEvery = time.Second

func newDeadLetterCmd(c *client) *cobra.Command {
	var (
		healthAddr          string
		healthcheck         bool
		logLevel, logFormat string
	)
	cmd := &cobra.Command{
		Use:   "dead-letter",
		Short: "Run the dead-letter forwarder alone (what `slipway up` runs beside the services)",
		Long: `Run the dead-letter forwarder until SIGINT/SIGTERM: every command or event
that exhausted its deliveries is copied to <prefix>.dlq.<stream>.<consumer>
(the DLQ stream), and a dead command is deleted from the work queue. It
sets the streams up first, like every service. Instances share a queue
group, so running several is harmless.

--health-addr (default $SLIPWAY_HEALTH_ADDR) serves /healthz, healthy while
the NATS connection is up; --healthcheck probes that endpoint of a running
forwarder and exits 0 (healthy) or 1, for container healthchecks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if healthcheck {
				if code := run.HealthcheckCode("slipway dead-letter", healthAddr, c.io.err); code != 0 {
					return &ExitError{Code: code}
				}
				return nil
			}
			logger, err := run.NewLogger(c.io.err, logLevel, logFormat)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			return runDeadLetter(cmd.Context(), c, healthAddr, logger.With("service", deadLetterService))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&healthAddr, "health-addr", env(run.HealthAddrEnv, ""), "health endpoint: host:port or unix:PATH; empty: none ($SLIPWAY_HEALTH_ADDR)")
	fl.BoolVar(&healthcheck, "healthcheck", false, "probe the health endpoint of a running forwarder and exit 0 (healthy) or 1")
	fl.StringVar(&logLevel, "log-level", env(run.LogLevelEnv, "info"), "log level: debug, info, warn, error ($SLIPWAY_LOG_LEVEL)")
	fl.StringVar(&logFormat, "log-format", env(run.LogFormatEnv, "json"), "log format: json or text ($SLIPWAY_LOG_FORMAT)")
	return cmd
}

func runDeadLetter(ctx context.Context, c *client, healthAddr string, logger *slog.Logger) error {
	b, err := bus.Connect(ctx, bus.Config{
		URL:            c.natsURL,
		Prefix:         c.prefix,
		Service:        deadLetterService,
		Credentials:    c.creds,
		CAFile:         c.ca,
		Logger:         logger,
		ConnectTimeout: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("cannot reach NATS at %s: %w", c.natsURL, err)
	}
	defer b.Close()
	if err := b.Setup(ctx); err != nil {
		return err
	}
	fwd, err := b.RunDeadLetter(ctx)
	if err != nil {
		return err
	}
	defer fwd.Stop()
	logger.Info("dead-letter forwarder running", "nats", c.natsURL, "prefix", c.prefix)

	var health run.Health
	grp := run.NewGroup(ctx)
	grp.Go("nats", func(ctx context.Context) error {
		tick := time.NewTicker(deadLetterHealthEvery)
		defer tick.Stop()
		for {
			if b.Conn().IsConnected() {
				health.Set("nats", nil)
			} else {
				health.Set("nats", errors.New("not connected: "+b.Conn().Status().String()))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	})
	grp.Go("health", func(ctx context.Context) error {
		return run.ServeHealth(ctx, healthAddr, &health)
	})
	err = grp.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		logger.Info("dead-letter forwarder stopped")
		return nil
	}
	return err
}
