// Command builder runs Slipway's builder service.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own, wired by Wire (see
// builder.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/services/builder"
)

func main() {
	servicemain.Main(builder.Name, builder.Wire)
}
