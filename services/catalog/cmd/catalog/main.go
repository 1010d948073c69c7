// Command catalog runs Slipway's image catalog service.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own, wired by Wire (see
// catalog.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/services/catalog"
)

func main() {
	servicemain.Main(catalog.ServiceName, catalog.Wire)
}
