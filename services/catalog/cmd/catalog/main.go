// Command catalog runs Slipway's image catalog service.
//
// Configuration comes from the environment: SLIPWAY_NATS_URL (default
// nats://127.0.0.1:4222), SLIPWAY_PREFIX (default slipway), the S3
// variables of blob.ConfigFromEnv, the catalog's own variables (see
// catalog.ConfigFromEnv and the README), SLIPWAY_HEALTH_ADDR for the health
// endpoint, SLIPWAY_LOG_LEVEL / SLIPWAY_LOG_FORMAT and the OTEL_* variables.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/telemetry"
	"github.com/slipway/slipway/services/catalog"
)

func main() { run.Main(catalog.ServiceName, serve) }

func serve(ctx context.Context) error {
	cfg, err := catalog.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.Logger = slog.Default()
	shutdown, err := telemetry.Setup(ctx, catalog.ServiceName)
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
		Service: catalog.ServiceName,
		Logger:  cfg.Logger,
	})
	if err != nil {
		return err
	}
	defer b.Close()

	svc := catalog.New(b, store, cfg)
	var health run.Health
	health.Set(catalog.ServiceName, errors.New("starting"))
	g := run.NewGroup(ctx)
	g.Go(catalog.ServiceName, svc.Run)
	g.Go("ready", func(ctx context.Context) error {
		select {
		case <-svc.Ready():
			health.Set(catalog.ServiceName, nil)
		case <-ctx.Done():
		}
		return nil
	})
	g.Go("health", func(ctx context.Context) error {
		if err := run.ServeHealth(ctx, run.Env(run.HealthAddrEnv, ""), &health); err != nil {
			return fmt.Errorf("health endpoint: %w", err)
		}
		return nil
	})
	return g.Wait()
}
