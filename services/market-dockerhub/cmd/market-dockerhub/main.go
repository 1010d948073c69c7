// Command market-dockerhub runs Slipway's marketplace service: Docker Hub's
// official images and any OCI registry's repositories as apps, and the
// resolve step of docker:// imports.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own (see
// market.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	market "github.com/slipway/slipway/services/market-dockerhub"
)

func main() {
	servicemain.Main(market.ServiceName, func(d servicemain.Deps) (servicemain.Service, error) {
		cfg, err := market.ConfigFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.Logger = d.Logger
		return market.New(d.Bus, cfg), nil
	}, servicemain.WithoutS3())
}
