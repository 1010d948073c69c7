package market_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// monitored is a scripted driver with a capacity (the private
// marketplaces' Monitor), whose usage the test sets.
type monitored struct {
	*scripted
	mu    sync.Mutex
	usage market.Usage
	err   error
}

func (d *monitored) Monitor(context.Context, market.Market) (market.Usage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usage, d.err
}

// TestMonitorRecorded: after a good listing a Monitor driver's USED_MB,
// FREE_MB and TOTAL_MB are recorded on the marketplace; a failed monitor
// is the listing's recorded error and keeps the last numbers.
func TestMonitorRecorded(t *testing.T) {
	h := newHarness(t)
	d := &monitored{scripted: &scripted{}}
	b := testenv.Connect(t, h.ctx, h.url, schemas.ServiceMarketLxc)
	pub := market.Market{ID: 5, Name: "private", Mad: schemas.MarketMADHTTP}
	s := market.New(b, market.Config{Service: schemas.ServiceMarketLxc, Description: "test",
		Drivers: market.Drivers{schemas.MarketMADHTTP: d}, Preregistered: []market.Market{pub},
		Settings: market.Settings{RefreshInterval: time.Hour, Logger: testenv.Logger(t, slog.LevelWarn)}})
	testenv.Start(t, h.ctx, schemas.ServiceMarketLxc, s.Run, s.Ready())

	d.set(nil, app("disk", "1"))
	d.usage = market.Usage{UsedMB: 3, FreeMB: 97, TotalMB: 100}
	if ev := h.refresh(schemas.ServiceMarketLxc, 5); ev.Error != "" || ev.Apps != 1 {
		t.Fatalf("refresh: %+v", ev)
	}
	if mk := h.show(schemas.ServiceMarketLxc, 5); mk.UsedMb != 3 || mk.FreeMb != 97 || mk.TotalMb != 100 || mk.Error != "" {
		t.Errorf("after a good monitor: used %d free %d total %d error %q", mk.UsedMb, mk.FreeMb, mk.TotalMb, mk.Error)
	}
	d.mu.Lock()
	d.err = errors.New("statfs: no such directory")
	d.mu.Unlock()
	ev := h.refresh(schemas.ServiceMarketLxc, 5)
	if ev.Error != "monitor: statfs: no such directory" || ev.Apps != 1 {
		t.Errorf("refresh with a failed monitor: %+v", ev)
	}
	if mk := h.show(schemas.ServiceMarketLxc, 5); mk.UsedMb != 3 || mk.TotalMb != 100 || mk.Error != ev.Error {
		t.Errorf("after a failed monitor: used %d total %d error %q", mk.UsedMb, mk.TotalMb, mk.Error)
	}
}
