package marketdockerhub

import "github.com/slipway/slipway/pkg/servicemain"

// Wire builds the marketplace service from its dependencies and the
// environment (ConfigFromEnv): the one wiring its binary, `slipway up` and
// tests use. It keeps no image data (its binary runs WithoutS3). A stack
// replaces only the owner of what it creates and the guard of fetched
// addresses.
func Wire(d servicemain.Deps) (servicemain.Service, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	cfg.Settings = cfg.Wired(d)
	return New(d.Bus, cfg), nil
}
