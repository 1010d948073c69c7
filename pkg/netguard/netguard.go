// Package netguard keeps Slipway's outbound fetches — image URLs, container
// registries, marketplaces — off addresses a request must not reach through
// a service: no server-side request forgery.
//
// Every outbound connection is dialed by Policy.DialContext, whose dialer
// checks the IP address actually connected to, after name resolution, so a
// name that resolves (or rebinds) to a refused address is refused too. By
// default it refuses loopback, private (RFC 1918, fc00::/7), link-local,
// multicast, unspecified, broadcast and carrier-grade NAT (100.64.0.0/10)
// addresses, in their IPv4-mapped and NAT64 (64:ff9b::/96) forms as well.
// SLIPWAY_FETCH_ALLOW opens CIDRs, addresses or host:port pairs
// (comma-separated). The cloud metadata service (169.254.169.254,
// fd00:ec2::254) and IPv6 link-local addresses (fe80::/10) are never
// allowed.
//
// Policy.Transport is an http.Transport built on that dialer (and on no
// proxy: a proxy would connect on our behalf where the check cannot see
// it); Policy.Client adds CheckRedirect, which refuses redirects to schemes
// other than http and https. Every redirect hop is dialed through the same
// dialer anyway.
//
// A refusal is a *RefusedError naming the address and the setting that
// would open it:
//
//	refusing to connect to 127.0.0.1:8080 (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvAllow is the variable FromEnv reads.
const EnvAllow = "SLIPWAY_FETCH_ALLOW"

// Policy says which addresses outbound fetches may dial. A nil *Policy is
// the default: every public address, nothing special. Build one with Parse
// or FromEnv; do not copy it.
type Policy struct {
	entries   []string
	prefixes  []netip.Prefix
	addrPorts []netip.AddrPort
	hostPorts []string // "name:port", lower-case, without a trailing dot

	once      sync.Once
	transport *http.Transport
}

// defaultPolicy is what a nil *Policy stands for; it holds the shared
// transport of the default.
var defaultPolicy = &Policy{}

func (p *Policy) orDefault() *Policy {
	if p == nil {
		return defaultPolicy
	}
	return p
}

// FromEnv reads SLIPWAY_FETCH_ALLOW; unset or empty gives the default.
func FromEnv() (*Policy, error) {
	p, err := Parse(os.Getenv(EnvAllow))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvAllow, err)
	}
	return p, nil
}

// Parse reads a comma-separated allow list. Each entry is a CIDR
// ("10.0.0.0/8", "fd00::/8"), an IP address (its /32 or /128), or
// host:port ("127.0.0.1:5000", "[::1]:5000", "registry.lan:5000"). A
// host:port with a name opens that name on that port whatever it resolves
// to; an address entry opens only that address. Entries that only cover
// addresses that are never allowed are an error; wider ones still leave
// those out.
func Parse(s string) (*Policy, error) {
	p := &Policy{}
	var errs []error
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if err := p.add(entry); err != nil {
			errs = append(errs, err)
			continue
		}
		p.entries = append(p.entries, entry)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// MustParse is Parse for lists known to be right; it panics on an error.
func MustParse(s string) *Policy {
	p, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return p
}

const entryForms = "want a CIDR (10.0.0.0/8), an IP address (192.168.1.20) or host:port (127.0.0.1:5000, registry.lan:5000)"

func (p *Policy) add(entry string) error {
	if strings.Contains(entry, "/") {
		pfx, err := netip.ParsePrefix(entry)
		if err != nil {
			return fmt.Errorf("entry %q: %s", entry, entryForms)
		}
		pfx = unmapPrefix(pfx.Masked())
		if why := neverPrefix(pfx); why != "" {
			return fmt.Errorf("entry %q: %s addresses are never allowed", entry, why)
		}
		p.prefixes = append(p.prefixes, pfx)
		return nil
	}
	if ip, err := netip.ParseAddr(entry); err == nil {
		if ip, err = entryAddr(entry, ip); err != nil {
			return err
		}
		p.prefixes = append(p.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
		return nil
	}
	host, port, err := net.SplitHostPort(entry)
	if err != nil || host == "" {
		return fmt.Errorf("entry %q: %s", entry, entryForms)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("entry %q: port %q: want 1 to 65535", entry, port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip, err = entryAddr(entry, ip); err != nil {
			return err
		}
		p.addrPorts = append(p.addrPorts, netip.AddrPortFrom(ip, uint16(n)))
		return nil
	}
	name := normalizeHost(host)
	if !validHostname(name) {
		return fmt.Errorf("entry %q: host %q is neither an IP address nor a host name", entry, host)
	}
	p.hostPorts = append(p.hostPorts, net.JoinHostPort(name, strconv.FormatUint(n, 10)))
	return nil
}

// entryAddr is the address ip an allow-list entry names, unmapped from
// IPv4-in-IPv6: an error when it has a zone or is never allowed.
func entryAddr(entry string, ip netip.Addr) (netip.Addr, error) {
	if ip.Zone() != "" {
		return ip, fmt.Errorf("entry %q: %s (without a zone)", entry, entryForms)
	}
	ip = ip.Unmap()
	if why := never(ip); why != "" {
		return ip, fmt.Errorf("entry %q: %s addresses are never allowed", entry, why)
	}
	return ip, nil
}

func normalizeHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// String is the allow list as given, entries joined by commas.
func (p *Policy) String() string {
	if p == nil {
		return ""
	}
	return strings.Join(p.entries, ",")
}

// RefusedError is a connection the policy refused.
type RefusedError struct {
	// Addr is the address that would have been dialed.
	Addr netip.AddrPort
	// Host is the name asked for when it is not Addr's IP itself, else "".
	Host string
	// Reason names the kind of address: "loopback", "private", …
	Reason string
	// Never is set for addresses no setting opens.
	Never bool
}

func (e *RefusedError) Error() string {
	what := e.Reason
	if e.Host != "" {
		what += ", the address of " + e.Host
	}
	if e.Never {
		return fmt.Sprintf("refusing to connect to %s (%s): it is never allowed, whatever %s says", e.Addr, what, EnvAllow)
	}
	ip := e.Addr.Addr()
	open := netip.PrefixFrom(ip, ip.BitLen()).String()
	if e.Host != "" {
		open += " (or " + net.JoinHostPort(e.Host, strconv.Itoa(int(e.Addr.Port()))) + ")"
	}
	return fmt.Sprintf("refusing to connect to %s (%s): set %s=%s to allow it", e.Addr, what, EnvAllow, open)
}

// Check tells whether the policy lets a connection to addr through; host
// is the name that was asked for ("" or addr's IP when none). It returns
// nil or a *RefusedError.
func (p *Policy) Check(host string, addr netip.AddrPort) error {
	ip := addr.Addr().WithZone("").Unmap()
	addr = netip.AddrPortFrom(ip, addr.Port())
	if h, err := netip.ParseAddr(host); err == nil && h.WithZone("").Unmap() == ip {
		host = ""
	}
	host = normalizeHost(host)
	if why := never(ip); why != "" {
		return &RefusedError{Addr: addr, Host: host, Reason: why, Never: true}
	}
	reason := classify(ip)
	if reason == "" || p.orDefault().opens(host, addr) {
		return nil
	}
	return &RefusedError{Addr: addr, Host: host, Reason: reason}
}

func (p *Policy) opens(host string, addr netip.AddrPort) bool {
	for _, pfx := range p.prefixes {
		if pfx.Contains(addr.Addr()) {
			return true
		}
	}
	for _, ap := range p.addrPorts {
		if ap == addr {
			return true
		}
	}
	if host != "" {
		hp := net.JoinHostPort(host, strconv.Itoa(int(addr.Port())))
		for _, h := range p.hostPorts {
			if h == hp {
				return true
			}
		}
	}
	return false
}

// DialContext dials address like a net.Dialer (30s connect timeout, 30s
// keep-alive) and refuses, before connecting, every resolved address the
// policy does not allow. Only TCP and UDP are dialed.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	d := net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(network, dialed string, _ syscall.RawConn) error {
			return p.control(host, network, dialed)
		},
	}
	return d.DialContext(ctx, network, address)
}

// control runs on each socket before it connects: dialed is the resolved
// address.
func (p *Policy) control(host, network, dialed string) error {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return fmt.Errorf("refusing to dial %s over %s: only TCP and UDP are dialed", dialed, network)
	}
	ap, err := netip.ParseAddrPort(dialed)
	if err != nil {
		return fmt.Errorf("refusing to dial %q: not an IP address and port", dialed)
	}
	return p.Check(host, ap)
}

// Transport returns the policy's shared HTTP transport: http.DefaultTransport's
// settings, 50 idle connections per host (registries pull layers in
// parallel), no proxy, and DialContext as its only dialer. Clone it to
// change its settings.
func (p *Policy) Transport() *http.Transport {
	p = p.orDefault()
	p.once.Do(func() {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.DialContext = p.DialContext
		t.DialTLSContext = nil
		t.MaxIdleConnsPerHost = 50
		p.transport = t
	})
	return p.transport
}

// Client returns an HTTP client on the policy's Transport with
// CheckRedirect and the given overall timeout (0 = none).
func (p *Policy) Client(timeout time.Duration) *http.Client {
	return &http.Client{Transport: p.Transport(), CheckRedirect: CheckRedirect, Timeout: timeout}
}

// maxRedirects matches net/http's own limit.
const maxRedirects = 10

// RedirectError is a redirect CheckRedirect would not follow.
type RedirectError struct {
	From, To string // the URLs, without their passwords
	Reason   string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("refusing the redirect from %s to %s: %s", e.From, e.To, e.Reason)
}

// CheckRedirect is an http.Client's CheckRedirect: it follows at most 10
// redirects, and only to http and https URLs, or returns a
// *RedirectError. (The hop's address is checked when it is dialed.)
func CheckRedirect(req *http.Request, via []*http.Request) error {
	from := ""
	if len(via) > 0 {
		from = via[len(via)-1].URL.Redacted()
	}
	if s := req.URL.Scheme; s != "http" && s != "https" {
		return &RedirectError{From: from, To: req.URL.Redacted(), Reason: "only http and https are followed"}
	}
	if len(via) >= maxRedirects {
		return &RedirectError{From: from, To: req.URL.Redacted(), Reason: fmt.Sprintf("stopped after %d redirects", maxRedirects)}
	}
	return nil
}

// AsRefused returns the *RefusedError in err's chain, if any.
func AsRefused(err error) (*RefusedError, bool) {
	var re *RefusedError
	ok := errors.As(err, &re)
	return re, ok
}
