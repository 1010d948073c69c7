package converter

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/netguard"
)

func TestConfigFromEnvFetchAllow(t *testing.T) {
	addr := netip.MustParseAddrPort("10.1.2.3:443")
	t.Setenv(netguard.EnvAllow, "")
	cfg, err := ConfigFromEnv()
	if err != nil || cfg.Fetch.Guard.Check("", addr) == nil {
		t.Errorf("unset: %v, private address open", err)
	}
	t.Setenv(netguard.EnvAllow, "10.0.0.0/8")
	if cfg, err = ConfigFromEnv(); err != nil || cfg.Fetch.Guard.Check("", addr) != nil {
		t.Errorf("10.0.0.0/8 not opened: %v", err)
	}
	t.Setenv(netguard.EnvAllow, "10.0.0.0/8,nope")
	if _, err := ConfigFromEnv(); err == nil || !strings.HasPrefix(err.Error(), `SLIPWAY_FETCH_ALLOW: entry "nope"`) {
		t.Errorf("bad entry: %v", err)
	}
}
