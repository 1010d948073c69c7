package guestinit

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

const netnsHelperEnv = "SLIPWAY_TEST_NETNS_HELPER"

// netnsHelper runs in a fresh network namespace (see TestConfigureNetwork):
// it makes eth0 (one end of a veth pair), configures it from a context as
// the init does, and prints what the kernel then holds.
func netnsHelper() int {
	if out, err := exec.Command("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1").CombinedOutput(); err != nil {
		fmt.Printf("ip link add: %v %s\n", err, out)
		return 1
	}
	nc, err := NetConfigFromContext(map[string]string{
		"ETH0_IP": "10.77.1.9", "ETH0_MASK": "255.255.255.0", "ETH0_GATEWAY": os.Getenv(netnsHelperEnv)})
	if err == nil {
		err = ConfigureNetwork("/", nc)
	}
	if err != nil {
		fmt.Printf("configure: %v\n", err)
		return 1
	}
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show", "default"}, {"-o", "link", "show", "lo"}, {"-o", "link", "show", "eth0"}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		fmt.Printf("%s", out)
		if err != nil {
			return 1
		}
	}
	return 0
}

// TestConfigureNetwork checks the init's own netlink requests against the
// kernel, in a private network namespace: lo and eth0 up, the address with
// its broadcast, the default route (on-link when the gateway is outside the
// subnet). The peer stays down, hence "linkdown" and NO-CARRIER.
func TestConfigureNetwork(t *testing.T) {
	needRoot(t, "a network namespace")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip (iproute2) not installed: ", err)
	}
	for gw, route := range map[string]string{
		"10.77.1.1": "default via 10.77.1.1 dev eth0 linkdown",
		"10.99.0.1": "default via 10.99.0.1 dev eth0 onlink",
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), netnsHelperEnv+"="+gw)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		for _, want := range []string{"inet 10.77.1.9/24 brd 10.77.1.255 scope global eth0", route, "<LOOPBACK,UP,LOWER_UP>", "eth0@eth1: <NO-CARRIER,BROADCAST,MULTICAST,UP,"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("gateway %s: no %q in:\n%s", gw, want, out)
			}
		}
	}
}
