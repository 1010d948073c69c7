// Command slipway-init is Slipway's guest init, injected by the builder at
// /.slipway/init. Booted as PID 1 (init=/.slipway/init) it brings the VM up
// and runs the container's process; run as any other pid it only supervises
// the process (no mounts, hostname, network or power off), for tests.
// The logic is in package guestinit.
package main

import (
	"os"
	"path/filepath"

	"github.com/slipway/slipway/services/builder/guestinit"
)

func main() {
	if filepath.Base(os.Args[0]) == guestinit.ExecStageName {
		os.Exit(guestinit.ExecStage(os.Args[1:]))
	}
	in := guestinit.NewSupervisor()
	if os.Getpid() == 1 {
		in = guestinit.NewPID1()
	}
	os.Exit(in.Run())
}
