// Command catalog runs Slipway's image catalog service.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own (see
// catalog.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/services/catalog"
)

func main() {
	servicemain.Main(catalog.ServiceName, func(d servicemain.Deps) (servicemain.Service, error) {
		cfg, err := catalog.ConfigFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.Logger = d.Logger
		return catalog.New(d.Bus, d.Store, cfg), nil
	})
}
