// Command kernel-registry runs Slipway's kernel-registry service.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own (see
// kernelregistry.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	kernelregistry "github.com/slipway/slipway/services/kernel-registry"
)

func main() {
	servicemain.Main(kernelregistry.Name, func(d servicemain.Deps) (servicemain.Service, error) {
		cfg, err := kernelregistry.ConfigFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.Logger = d.Logger
		return kernelregistry.New(d.Bus, d.Store, cfg), nil
	})
}
