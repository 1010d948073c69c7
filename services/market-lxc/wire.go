package marketlxc

import "github.com/slipway/slipway/pkg/servicemain"

// Wire builds the service from its dependencies and the environment
// (ConfigFromEnv): the one wiring its binary, `slipway up` and tests use.
// Its S3 user (d.Store) publishes into s3 marketplaces and reads the blobs
// of published images. A stack replaces the owner of what it creates, the
// guard of fetched addresses and, unless set, the public root (a
// directory of its data directory).
func Wire(d servicemain.Deps) (servicemain.Service, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	cfg.Settings = cfg.Wired(d)
	cfg.Store = d.Store
	if cfg.PublicRoot == "" && d.Stack.DataDir != "" {
		cfg.PublicRoot = d.Stack.Path(PublicRootDir)
	}
	return New(d.Bus, cfg), nil
}
