package guestinit

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// NetConfig is eth0's static configuration from the context (ETH0_*).
type NetConfig struct {
	// MAC, when set (ETH0_MAC), picks the interface by address; otherwise
	// the interface is eth0.
	MAC     string
	Address netip.Prefix
	Gateway netip.Addr // zero when none
	DNS     []netip.Addr
	Search  []string
}

// NetConfigFromContext reads ETH0_IP with ETH0_MASK or ETH0_PREFIX (default
// /24 as OpenNebula does without a mask), ETH0_GATEWAY, ETH0_DNS and
// ETH0_SEARCH_DOMAIN. It returns nil when ETH0_IP is unset.
func NetConfigFromContext(ctx map[string]string) (*NetConfig, error) {
	ipText := strings.TrimSpace(ctx["ETH0_IP"])
	if ipText == "" {
		return nil, nil
	}
	ip, err := netip.ParseAddr(ipText)
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("ETH0_IP %q is not an IPv4 address", ipText)
	}
	bits, err := prefixBits(ctx)
	if err != nil {
		return nil, err
	}
	nc := &NetConfig{MAC: strings.ToLower(strings.TrimSpace(ctx["ETH0_MAC"])), Address: netip.PrefixFrom(ip, bits)}
	if gw := strings.TrimSpace(ctx["ETH0_GATEWAY"]); gw != "" {
		if nc.Gateway, err = netip.ParseAddr(gw); err != nil || !nc.Gateway.Is4() {
			return nil, fmt.Errorf("ETH0_GATEWAY %q is not an IPv4 address", gw)
		}
	}
	for _, d := range strings.Fields(strings.ReplaceAll(ctx["ETH0_DNS"], ",", " ")) {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("ETH0_DNS: %q is not an IP address", d)
		}
		nc.DNS = append(nc.DNS, a)
	}
	nc.Search = strings.Fields(ctx["ETH0_SEARCH_DOMAIN"])
	return nc, nil
}

func prefixBits(ctx map[string]string) (int, error) {
	if p := strings.TrimSpace(ctx["ETH0_PREFIX"]); p != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(p, "/"))
		if err != nil || n < 0 || n > 32 {
			return 0, fmt.Errorf("ETH0_PREFIX %q is not a prefix length 0-32", p)
		}
		return n, nil
	}
	m := strings.TrimSpace(ctx["ETH0_MASK"])
	if m == "" {
		return 24, nil
	}
	return maskBits(m)
}

// maskBits converts a dotted netmask ("255.255.255.0") to a prefix length.
func maskBits(m string) (int, error) {
	a, err := netip.ParseAddr(m)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("ETH0_MASK %q is not a netmask", m)
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for v&(1<<31) != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("ETH0_MASK %q is not a contiguous netmask", m)
	}
	return bits, nil
}

// ResolvConf is the /etc/resolv.conf text for nc, empty without DNS.
func (nc *NetConfig) ResolvConf() string {
	if len(nc.DNS) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("# written by slipway-init from the VM context\n")
	if len(nc.Search) > 0 {
		b.WriteString("search " + strings.Join(nc.Search, " ") + "\n")
	}
	for _, d := range nc.DNS {
		b.WriteString("nameserver " + d.String() + "\n")
	}
	return b.String()
}

// interfaceName finds the interface named by nc: the one whose MAC is
// nc.MAC in sysfs under root, else eth0.
func (nc *NetConfig) interfaceName(root string) (string, error) {
	if nc.MAC == "" {
		return "eth0", nil
	}
	dir := filepath.Join(root, "sys/class/net")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("ETH0_MAC %s: %w", nc.MAC, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "address"))
		if err == nil && strings.EqualFold(strings.TrimSpace(string(b)), nc.MAC) {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("ETH0_MAC %s: no interface has that address", nc.MAC)
}

// ConfigureNetwork brings lo and the interface up, sets the address and the
// default route through netlink. Needs CAP_NET_ADMIN in the network
// namespace to change; root is where sysfs is found.
func ConfigureNetwork(root string, nc *NetConfig) error {
	c, err := openRtnl()
	if err != nil {
		return err
	}
	defer c.Close()
	if lo, err := ifIndex("lo"); err == nil {
		if err := c.linkUp(lo); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
	}
	if nc == nil {
		return nil
	}
	name, err := nc.interfaceName(root)
	if err != nil {
		return err
	}
	idx, err := ifIndex(name)
	if err != nil {
		return err
	}
	if err := c.linkUp(idx); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	if err := c.addAddr(idx, nc.Address); err != nil {
		return fmt.Errorf("%s address %s: %w", name, nc.Address, err)
	}
	if nc.Gateway.IsValid() {
		onlink := !nc.Address.Masked().Contains(nc.Gateway)
		if err := c.addDefaultRoute(idx, nc.Gateway, onlink); err != nil {
			return fmt.Errorf("%s default route via %s: %w", name, nc.Gateway, err)
		}
	}
	return nil
}
