// Command market-dockerhub runs Slipway's marketplace service: Docker Hub's
// official images and any OCI registry's repositories as apps, and the
// resolve step of docker:// imports.
//
// Configuration comes from the environment: SLIPWAY_NATS_URL (default
// nats://127.0.0.1:4222), SLIPWAY_PREFIX (default slipway), the service's
// own variables (see marketdockerhub.ConfigFromEnv and the README),
// SLIPWAY_HEALTH_ADDR for the health endpoint, SLIPWAY_LOG_LEVEL /
// SLIPWAY_LOG_FORMAT and the OTEL_* variables.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/telemetry"
	market "github.com/slipway/slipway/services/market-dockerhub"
)

func main() { run.Main(market.ServiceName, serve) }

func serve(ctx context.Context) error {
	cfg, err := market.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.Logger = slog.Default()
	shutdown, err := telemetry.Setup(ctx, market.ServiceName)
	if err != nil {
		return err
	}
	defer func() { _ = shutdown(context.WithoutCancel(ctx)) }()

	b, err := bus.Connect(ctx, bus.Config{
		URL:     run.Env("SLIPWAY_NATS_URL", "nats://127.0.0.1:4222"),
		Prefix:  run.Env("SLIPWAY_PREFIX", bus.DefaultPrefix),
		Service: market.ServiceName,
		Logger:  cfg.Logger,
	})
	if err != nil {
		return err
	}
	defer b.Close()

	svc := market.New(b, cfg)
	var health run.Health
	health.Set(market.ServiceName, errors.New("starting"))
	g := run.NewGroup(ctx)
	g.Go(market.ServiceName, svc.Run)
	g.Go("ready", func(ctx context.Context) error {
		select {
		case <-svc.Ready():
			health.Set(market.ServiceName, nil)
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
