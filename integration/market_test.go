package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/marketfake"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
)

// TestMarketAppsBoot is issue 14's promise end to end, with the CLI as a
// person types it: a Linux Containers marketplace and a TurnKey one, made
// from OpenNebula market templates, list their apps from loopback servers
// that serve the real index formats; an app of each is imported (its
// rootfs tarball verified and built into a bootable qcow2), and the VM
// template the import made boots under QEMU with Debian's kernel from
// kernel-registry until the rootfs's own /sbin/init prints its token.
func TestMarketAppsBoot(t *testing.T) {
	deb := debianKernelPackage(t)
	lxcToken, tkToken := "LXC-"+randomHex(t, 6), "TURNKEY-"+randomHex(t, 6)
	lxc := marketfake.NewLinuxContainers(t, marketfake.LXCImage{Dist: "debian", Release: "bookworm", Arch: "amd64",
		Variant: "default", Build: "20261207_05:24", Rootfs: marketfake.BusyboxTarXz(t, "debian", lxcToken)})
	tk := marketfake.NewTurnKey(t, marketfake.TurnKeyApp{App: "domain-controller", Debian: 12, Version: "18.0", Revision: 1,
		Arch: "amd64", Rootfs: marketfake.BusyboxTarGz(t, "debian", tkToken)})
	keyring, err := pgpverify.ReadKeyring(tk.Signer.PublicKey(t))
	if err != nil {
		t.Fatal(err)
	}

	s := newStack(t, stackOptions{containers: true, guestInit: buildGuestInit(t), boot: true, turnKeyKeyring: keyring})
	// The marketplaces' VM templates boot the KERNEL image named "kernel".
	s.addKernel(t, "kernel", deb)

	for _, c := range []struct {
		mad, endpoint, app, token string
	}{
		{"linuxcontainers", lxc.URL, "debian_bookworm_amd64_default", lxcToken},
		{"turnkeylinux", tk.URL + "pve", "domain-controller", tkToken},
	} {
		t.Run(c.mad, func(t *testing.T) {
			market := "local-" + c.mad
			tpl := filepath.Join(t.TempDir(), "market.tpl")
			writeFile(t, tpl, fmt.Appendf(nil, "NAME = %q\nMARKET_MAD = %q\nENDPOINT = %q\nIMAGE_SIZE_MB = \"64\"\nFILESYSTEM = \"ext4\"\nFORMAT = \"qcow2\"\n",
				market, c.mad, c.endpoint))
			s.mustSlipway("market", "create", tpl)
			s.mustSlipway("market", "refresh", market)
			if out := s.mustSlipway("market", "app", "list", market); !strings.Contains(out, c.app) {
				t.Fatalf("app list of %s lacks %s:\n%s", market, c.app, out)
			}
			name := "vm-" + c.mad
			out := s.mustSlipway("market", "app", "import", market+"/"+c.app, "--name", name, "--wait")
			var img schemas.Image
			s.mustJSON(&img, "image", "show", name, "--json")
			if img.State != "READY" || img.Format != "qcow2" || img.Attributes["DISTRO"] != "debian" {
				t.Fatalf("imported image: state %s format %s attributes %v\n%s", img.State, img.Format, img.Attributes, out)
			}
			var tmpl struct {
				ID int64 `json:"id"`
			}
			s.mustJSON(&tmpl, "template", "show", name, "--json")
			vm := s.instantiate(t, tmpl.ID)
			console := s.waitConsole(t, vm, c.token, 6*time.Minute)
			// The guest init handed PID 1 over to the rootfs's own init.
			if !strings.Contains(console, "SLIPWAY-READY pid=1 cmd=/sbin/init") {
				t.Errorf("console lacks the guest init's hand-over to /sbin/init:\n%s", console)
			}
			s.terminate(t, vm)
		})
	}
}
