package cryptoluks

import "github.com/slipway/slipway/pkg/servicemain"

// Wire builds crypto-luks from its dependencies and the environment
// (ConfigFromEnv): the one wiring its binary, `slipway up` and tests use.
// A stack replaces only its scratch directory's default, and with no KEK
// configured keeps one generated in its data directory (luks.kek, mode
// 0600), where the binary refuses to start.
func Wire(d servicemain.Deps) (servicemain.Service, error) {
	cfg, err := ConfigFromEnv(d.Stack.Path("luks.kek"))
	if err != nil {
		return nil, err
	}
	cfg.ApplyDeps(d, Name)
	return New(d.Bus, d.Store, cfg), nil
}
