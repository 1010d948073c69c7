// Command market-lxc runs Slipway's marketplace service of OpenNebula's
// public marketplace, Linux Containers and TurnKey Linux.
//
// Configuration comes from the environment: the variables every service
// reads (see package servicemain) and the service's own, wired by Wire
// (see marketlxc.ConfigFromEnv and the README).
package main

import (
	"github.com/slipway/slipway/pkg/servicemain"
	marketlxc "github.com/slipway/slipway/services/market-lxc"
)

func main() {
	servicemain.Main(marketlxc.ServiceName, marketlxc.Wire)
}
