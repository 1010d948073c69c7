// Command launcher runs Slipway's launcher service: VM templates and the
// VMs booted from them with QEMU.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the launcher's own (see
// launcher.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/services/launcher"
)

func main() {
	servicemain.Main(launcher.Name, launcher.Wire)
}
