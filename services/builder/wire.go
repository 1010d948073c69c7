package builder

import "github.com/slipway/slipway/pkg/servicemain"

// Wire builds the builder from its dependencies and the environment
// (ConfigFromEnv): the one wiring its binary, `slipway up` and tests use. A
// stack replaces only its scratch directory's default and the guard of
// registry addresses.
func Wire(d servicemain.Deps) (servicemain.Service, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	cfg.ApplyDeps(d, Name)
	cfg.Registry.Guard = d.Stack.GuardOr(cfg.Registry.Guard)
	return New(d.Bus, d.Store, cfg), nil
}
