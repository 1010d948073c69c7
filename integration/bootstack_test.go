package integration

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	cryptoluks "github.com/slipway/slipway/services/crypto-luks"
	"github.com/slipway/slipway/services/crypto-luks/keywrap/keywraptest"
	kernelregistry "github.com/slipway/slipway/services/kernel-registry"
	"github.com/slipway/slipway/services/launcher"
)

// startBootServices runs kernel-registry (with a slipway-initrd built for
// the test), crypto-luks (with a KEK made for the test) and the launcher
// (QEMU with the accelerator the launcher's probe proves: KVM, else TCG).
func (s *stack) startBootServices() {
	s.t.Helper()
	keys := keywraptest.New(s.t)
	kr := s.connect(kernelregistry.Name)
	krCfg := kernelregistry.Config{Config: worker.Config{TempDir: s.t.TempDir()}, Initrd: s.buildInitrdInit()}
	s.run(kernelregistry.Name, func(ctx context.Context) error {
		return kernelregistry.New(kr, s.store, krCfg).Run(ctx)
	})
	cl := s.connect(cryptoluks.Name)
	clCfg := cryptoluks.Config{Config: worker.Config{TempDir: s.t.TempDir()}, Keys: keys, IterTime: 100 * time.Millisecond}
	s.run(cryptoluks.Name, func(ctx context.Context) error {
		return cryptoluks.New(cl, s.store, clCfg).Run(ctx)
	})
	la := s.connect(launcher.Name)
	// Not t.TempDir(): its parent is 0700, and the launcher (as root) runs QEMU as an
	// unprivileged uid that must walk down to its VM directory.
	work, err := os.MkdirTemp("", "slipway-launcher-it-")
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { os.RemoveAll(work) })
	laCfg := launcher.Config{WorkDir: work, ShutdownTimeout: 5 * time.Second}
	s.run(launcher.Name, func(ctx context.Context) error {
		return launcher.New(la, s.store, laCfg).Run(ctx)
	})
	for _, name := range []string{kernelregistry.Name, cryptoluks.Name, launcher.Name} {
		s.waitForService(name)
	}
}

// buildInitrdInit builds the static init kernel-registry puts in initrds.
func (s *stack) buildInitrdInit() string {
	s.t.Helper()
	return testenv.Build(s.t, "./services/kernel-registry/cmd/slipway-initrd", true)
}

// addKernel adds Debian's kernel package deb as KERNEL name with `slipway
// kernel add` and waits until it and the initrd kernel-registry builds for
// it are READY; it returns the KERNEL image's ID.
func (s *stack) addKernel(t testing.TB, name, deb string) int64 {
	t.Helper()
	kernelID := mustID(t, s.mustSlipway("kernel", "add", "--name", name, deb))
	var kernel struct {
		Initrd *int64 `json:"initrd"`
	}
	s.mustJSON(&kernel, "kernel", "show", fmt.Sprint(kernelID), "--json")
	if kernel.Initrd == nil {
		t.Fatalf("kernel %d has no initrd", kernelID)
	}
	for _, id := range []int64{kernelID, *kernel.Initrd} {
		if img := s.waitSettled(id, 2*time.Minute); img.State != "READY" {
			t.Fatalf("kernel-registry image %d is %s (%s)", id, img.State, img.Error)
		}
	}
	return kernelID
}
