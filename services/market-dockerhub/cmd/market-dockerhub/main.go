// Command market-dockerhub runs Slipway's marketplace service: Docker Hub's
// official images and any OCI registry's repositories as apps, and the
// resolve step of docker:// imports.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own, wired by Wire (see
// market.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	market "github.com/slipway/slipway/services/market-dockerhub"
)

func main() {
	servicemain.Main(market.ServiceName, market.Wire, servicemain.WithoutS3())
}
