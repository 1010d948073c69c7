package up

import (
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder"
	"github.com/slipway/slipway/services/catalog"
	"github.com/slipway/slipway/services/converter"
	cryptoluks "github.com/slipway/slipway/services/crypto-luks"
	kernelregistry "github.com/slipway/slipway/services/kernel-registry"
	"github.com/slipway/slipway/services/launcher"
	"github.com/slipway/slipway/services/launcher/qemu"
	marketdockerhub "github.com/slipway/slipway/services/market-dockerhub"
	marketlxc "github.com/slipway/slipway/services/market-lxc"
)

// readier is a service that tells when it consumes and answers, so `up`
// announces itself only once a command sent right away would be served.
type readier interface {
	Ready() <-chan struct{}
}

// accelerated is the launcher: once ready, it knows which accelerator its
// probe proved.
type accelerated interface {
	Accelerator() qemu.Accelerator
}

// service is one in-process service and its wiring, the same function its
// binary's main calls.
type service struct {
	name string
	wire servicemain.Wire
}

// services lists every implemented service. Each gets its own bus
// connection, as it would running as its own binary, and is wired by the
// function its binary uses, so it reads the same variables: an operator's
// caps (SLIPWAY_MAX_VIRTUAL_SIZE, SLIPWAY_MAX_INPUT_BYTES…) hold here too,
// and a variable that is wrong stops `up` with its name rather than being
// ignored. The stack replaces only what is its own (stack): the work
// files' default, the data directory, the fetch guard and the user.
var services = []service{
	{schemas.ServiceCatalog, catalog.Wire},
	{schemas.ServiceConverter, converter.Wire},
	{schemas.ServiceMarketDockerhub, marketdockerhub.Wire},
	{schemas.ServiceMarketLxc, marketlxc.Wire},
	{schemas.ServiceBuilder, builder.Wire},
	{schemas.ServiceCryptoLUKS, cryptoluks.Wire},
	{schemas.ServiceKernelRegistry, kernelregistry.Wire},
	{schemas.ServiceLauncher, launcher.Wire},
}

// stack is what `up` decides for every service: work files under the
// data directory rather than /tmp (often a small tmpfs), crypto-luks's
// generated KEK and the launcher's VMs there too, the guard of fetches,
// and the owner of what is created.
func (s *Stack) stack() servicemain.Stack {
	return servicemain.Stack{DataDir: s.cfg.DataDir, Guard: s.cfg.Guard, User: s.cfg.User}
}
