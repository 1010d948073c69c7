// Command converter runs Slipway's converter service.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own (see
// converter.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/services/converter"
)

func main() {
	servicemain.Main(converter.Name, func(d servicemain.Deps) (servicemain.Service, error) {
		cfg, err := converter.ConfigFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.Logger = d.Logger
		return converter.New(d.Bus, d.Store, cfg), nil
	})
}
