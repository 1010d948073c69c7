package cli

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestMarketListWithOneServiceDown: with market-dockerhub not running,
// market list still lists market-lxc's marketplaces and says on stderr
// what it left out; a marketplace of the missing service is not found.
func TestMarketListWithOneServiceDown(t *testing.T) {
	url, _ := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testenv.SetupStreams(t, ctx, url)
	// market-lxc's core, as the service runs it (the CLI imports no service).
	lxc := schemas.ServiceMarketLxc
	svc := market.New(testenv.Connect(t, ctx, url, lxc), market.Config{Service: lxc, Preregistered: []market.Market{
		{ID: 0, Name: "OpenNebula Public", Mad: schemas.MarketMADOne},
		{ID: 1, Name: "Linux Containers", Mad: schemas.MarketMADLinuxcontainers},
		{ID: 2, Name: "TurnKey Linux Containers", Mad: schemas.MarketMADTurnkeylinux},
	}, Settings: market.Settings{Logger: slog.New(slog.DiscardHandler)}})
	testenv.Start(t, ctx, lxc, svc.Run, svc.Ready())
	b := testenv.Connect(t, ctx, url, "cli")

	var warn bytes.Buffer
	markets, err := listMarkets(ctx, b, &warn)
	if err != nil || len(markets) != 3 || markets[0].ID != 0 || markets[2].ID != 2 {
		t.Fatalf("markets %+v, %v", markets, err)
	}
	if !strings.Contains(warn.String(), "warning: list marketplaces: left out:") || !strings.Contains(warn.String(), "market-dockerhub") {
		t.Errorf("warning: %q", warn.String())
	}
	if m, err := findMarket(ctx, b, "Linux Containers"); err != nil || m.ID != 1 || marketService(m) != lxc {
		t.Errorf("findMarket(Linux Containers) = %+v, %v", m, err)
	}
	if _, err := findMarket(ctx, b, "DockerHub"); err == nil {
		t.Error("found DockerHub with market-dockerhub down")
	}
}
