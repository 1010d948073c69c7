package kernelregistry

import "github.com/slipway/slipway/pkg/servicemain"

// Wire builds the kernel registry from its dependencies and the
// environment (ConfigFromEnv): the one wiring its binary, `slipway up` and
// tests use. A stack replaces only its scratch directory's default.
func Wire(d servicemain.Deps) (servicemain.Service, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	cfg.ApplyDeps(d, Name)
	return New(d.Bus, d.Store, cfg), nil
}
