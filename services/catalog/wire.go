package catalog

import "github.com/slipway/slipway/pkg/servicemain"

// Wire builds the catalog from its dependencies and the environment
// (ConfigFromEnv): the one wiring its binary, `slipway up` and tests use. A
// stack replaces the owner of the images services create, and gives the
// identity keys it keeps beside its data.
func Wire(d servicemain.Deps) (servicemain.Service, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	cfg.User = d.Stack.UserOr(cfg.User)
	if cfg.IdentityDir == "" {
		cfg.IdentityDir = d.Stack.Path("identity")
	}
	cfg.Logger = d.Logger
	return New(d.Bus, d.Store, cfg), nil
}
