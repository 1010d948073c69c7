// Command kernel-registry runs Slipway's kernel-registry service.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own, wired by Wire (see
// kernelregistry.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	kernelregistry "github.com/slipway/slipway/services/kernel-registry"
)

func main() {
	servicemain.Main(kernelregistry.Name, kernelregistry.Wire)
}
