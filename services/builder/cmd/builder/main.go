// Command builder runs Slipway's builder service.
//
// Configuration comes from the environment: SLIPWAY_NATS_URL (default
// nats://127.0.0.1:4222), SLIPWAY_PREFIX (default slipway), the S3
// variables of blob.ConfigFromEnv, the builder's own variables (see
// builder.ConfigFromEnv and the README), SLIPWAY_HEALTH_ADDR for the
// health endpoint, SLIPWAY_LOG_LEVEL / SLIPWAY_LOG_FORMAT and the OTEL_*
// variables.
package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/telemetry"
	"github.com/slipway/slipway/services/builder"
)

func main() { run.Main(builder.Name, serve) }

func serve(ctx context.Context) error {
	cfg, err := builder.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.Logger = slog.Default()
	shutdown, err := telemetry.Setup(ctx, builder.Name)
	if err != nil {
		return err
	}
	defer func() { _ = shutdown(context.WithoutCancel(ctx)) }()

	store, err := blob.New(blob.ConfigFromEnv())
	if err != nil {
		return err
	}
	b, err := bus.Connect(ctx, bus.Config{
		URL:     run.Env("SLIPWAY_NATS_URL", "nats://127.0.0.1:4222"),
		Prefix:  run.Env("SLIPWAY_PREFIX", bus.DefaultPrefix),
		Service: builder.Name,
		Logger:  cfg.Logger,
	})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Setup(ctx); err != nil {
		return err
	}

	var health run.Health
	health.Set(builder.Name, nil)
	g := run.NewGroup(ctx)
	g.Go(builder.Name, builder.New(b, store, cfg).Run)
	g.Go("health", func(ctx context.Context) error {
		if err := run.ServeHealth(ctx, run.Env(run.HealthAddrEnv, ""), &health); err != nil {
			return fmt.Errorf("health endpoint: %w", err)
		}
		return nil
	})
	return g.Wait()
}
