// Command builder runs Slipway's builder service.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own (see
// builder.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/services/builder"
)

func main() {
	servicemain.Main(builder.Name, func(d servicemain.Deps) (servicemain.Service, error) {
		cfg, err := builder.ConfigFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.Logger = d.Logger
		return builder.New(d.Bus, d.Store, cfg), nil
	})
}
