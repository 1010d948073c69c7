package netguard

import "net/netip"

// rng is a range of special addresses and what to call them.
type rng struct {
	prefix netip.Prefix
	reason string
}

var (
	// neverRanges no setting opens.
	neverRanges = []rng{
		{netip.MustParsePrefix("169.254.169.254/32"), "cloud metadata service"},
		{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata service"},
		{netip.MustParsePrefix("fe80::/10"), "IPv6 link-local"},
	}
	// refusedRanges are refused unless the allow list opens them.
	refusedRanges = []rng{
		{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
		{netip.MustParsePrefix("::/128"), "unspecified"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
		{netip.MustParsePrefix("::1/128"), "loopback"},
		{netip.MustParsePrefix("10.0.0.0/8"), "private"},
		{netip.MustParsePrefix("172.16.0.0/12"), "private"},
		{netip.MustParsePrefix("192.168.0.0/16"), "private"},
		{netip.MustParsePrefix("fc00::/7"), "private"},
		{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
		{netip.MustParsePrefix("ff00::/8"), "multicast"},
		{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	}
	// nat64 carries an IPv4 address in its last 32 bits (RFC 6052).
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// embedded4 returns the IPv4 address a NAT64 address stands for.
func embedded4(ip netip.Addr) (netip.Addr, bool) {
	if !nat64.Contains(ip) {
		return netip.Addr{}, false
	}
	b := ip.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

// never names why ip is never allowed, or is "".
func never(ip netip.Addr) string {
	ip = ip.WithZone("").Unmap()
	if v4, ok := embedded4(ip); ok {
		if why := never(v4); why != "" {
			return why + " (NAT64 of " + v4.String() + ")"
		}
	}
	for _, r := range neverRanges {
		if r.prefix.Contains(ip) {
			return r.reason
		}
	}
	return ""
}

// neverPrefix names why every address of pfx is never allowed, or is "".
func neverPrefix(pfx netip.Prefix) string {
	for _, r := range neverRanges {
		if pfx.Bits() >= r.prefix.Bits() && r.prefix.Contains(pfx.Addr()) {
			return r.reason
		}
	}
	return ""
}

// classify names the kind of special address ip is, or is "" for an
// ordinary (public) one.
func classify(ip netip.Addr) string {
	ip = ip.WithZone("").Unmap()
	if v4, ok := embedded4(ip); ok {
		if why := classify(v4); why != "" {
			return why + " (NAT64 of " + v4.String() + ")"
		}
		return ""
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(ip) {
			return r.reason
		}
	}
	return ""
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96).
func unmapPrefix(pfx netip.Prefix) netip.Prefix {
	if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
		return netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
	}
	return pfx
}
