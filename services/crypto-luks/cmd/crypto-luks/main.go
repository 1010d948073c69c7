// Command crypto-luks runs Slipway's crypto-luks service.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own, among them the
// key-encryption key (SLIPWAY_LUKS_KEK or SLIPWAY_LUKS_KEK_FILE), without
// which it refuses to start (see cryptoluks.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	cryptoluks "github.com/slipway/slipway/services/crypto-luks"
)

func main() {
	servicemain.Main(cryptoluks.Name, cryptoluks.Wire)
}
