// Command converter runs Slipway's converter service.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own, wired by Wire (see
// converter.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/services/converter"
)

func main() {
	servicemain.Main(converter.Name, converter.Wire)
}
