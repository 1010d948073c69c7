package netguard_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/testenv"
)

// TestDefaultRefusesEachRange checks one address of every refused range,
// in its plain, IPv4-mapped and NAT64 forms, and that ordinary addresses
// pass.
func TestDefaultRefusesEachRange(t *testing.T) {
	var p *netguard.Policy // the default
	for addr, reason := range map[string]string{
		"127.0.0.1":       "loopback",
		"127.255.0.9":     "loopback",
		"::1":             "loopback",
		"10.1.2.3":        "private",
		"172.16.0.1":      "private",
		"172.31.255.254":  "private",
		"192.168.1.1":     "private",
		"fc00::1":         "private",
		"fd12:3456::1":    "private",
		"169.254.1.1":     "link-local",
		"100.64.0.1":      "carrier-grade NAT",
		"100.127.255.254": "carrier-grade NAT",
		"224.0.0.1":       "multicast",
		"239.255.255.250": "multicast",
		"ff02::1":         "multicast",
		"0.0.0.0":         "unspecified",
		"0.1.2.3":         "unspecified",
		"::":              "unspecified",
		"255.255.255.255": "broadcast",
		// IPv4-mapped and NAT64 forms of the same.
		"::ffff:127.0.0.1":   "loopback",
		"::ffff:10.0.0.1":    "private",
		"::ffff:100.64.0.1":  "carrier-grade NAT",
		"64:ff9b::7f00:1":    "loopback (NAT64 of 127.0.0.1)",
		"64:ff9b::c0a8:101":  "private (NAT64 of 192.168.1.1)",
		"::ffff:169.254.3.4": "link-local",
	} {
		ap := netip.AddrPortFrom(netip.MustParseAddr(addr), 80)
		err := p.Check("", ap)
		re, ok := netguard.AsRefused(err)
		if !ok || re.Reason != reason || re.Never {
			t.Errorf("%s: %v, want refused as %s", addr, err, reason)
		}
	}
	for _, addr := range []string{"93.184.215.14", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1", "64:ff9b::808:808"} {
		if err := p.Check("", netip.AddrPortFrom(netip.MustParseAddr(addr), 443)); err != nil {
			t.Errorf("%s: %v, want it allowed", addr, err)
		}
	}
}

// TestMetadataIsNeverAllowed: the cloud metadata address and IPv6
// link-local stay refused under an allow list that opens everything, and
// an entry naming only them is an error.
func TestMetadataIsNeverAllowed(t *testing.T) {
	all := netguard.MustParse("0.0.0.0/0,::/0,169.254.0.0/16")
	for addr, reason := range map[string]string{
		"169.254.169.254":        "cloud metadata service",
		"::ffff:169.254.169.254": "cloud metadata service",
		"64:ff9b::a9fe:a9fe":     "cloud metadata service (NAT64 of 169.254.169.254)",
		"fd00:ec2::254":          "cloud metadata service",
		"fe80::1":                "IPv6 link-local",
		"febf:ffff::1":           "IPv6 link-local",
	} {
		err := all.Check("", netip.AddrPortFrom(netip.MustParseAddr(addr), 80))
		re, ok := netguard.AsRefused(err)
		if !ok || !re.Never || re.Reason != reason {
			t.Errorf("%s: %v, want never allowed (%s)", addr, err, reason)
		}
	}
	if err := all.Check("", netip.MustParseAddrPort("169.254.1.1:80")); err != nil {
		t.Errorf("169.254.1.1 under 169.254.0.0/16: %v", err)
	}
	err := all.Check("", netip.MustParseAddrPort("169.254.169.254:80"))
	if want := "refusing to connect to 169.254.169.254:80 (cloud metadata service): it is never allowed, whatever SLIPWAY_FETCH_ALLOW says"; err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	for _, entry := range []string{"169.254.169.254", "169.254.169.254/32", "::ffff:169.254.169.254/128", "169.254.169.254:80", "fe80::/10", "fe80::/64", "fe80::1", "[fe80::1]:80", "fd00:ec2::254"} {
		if _, err := netguard.Parse(entry); err == nil || !strings.Contains(err.Error(), "never allowed") {
			t.Errorf("Parse(%q) = %v, want an error saying it is never allowed", entry, err)
		}
	}
	// A real dial of the metadata address is refused before any packet
	// leaves.
	resp, err := all.Client(5 * time.Second).Get("http://169.254.169.254/latest/meta-data/")
	if err == nil {
		resp.Body.Close()
		t.Fatal("reached the metadata address")
	}
	if re, ok := netguard.AsRefused(err); !ok || !re.Never {
		t.Errorf("err = %v, want a RefusedError", err)
	}
}

func TestParseErrors(t *testing.T) {
	for entry, want := range map[string]string{
		"10.0.0.0/33":        `entry "10.0.0.0/33": want a CIDR`,
		"nonsense":           `entry "nonsense": want a CIDR`,
		"127.0.0.1:0":        `entry "127.0.0.1:0": port "0": want 1 to 65535`,
		"127.0.0.1:70000":    `port "70000"`,
		"host:http":          `port "http"`,
		"bad_-host!:80":      `host "bad_-host!" is neither`,
		":5000":              `entry ":5000": want a CIDR`,
		"10.0.0.0/8, 1.2.3":  `entry "1.2.3"`,
		"fe80::1%eth0":       `without a zone`,
		"http://1.2.3.4:5/x": `entry "http://1.2.3.4:5/x": want a CIDR`,
	} {
		_, err := netguard.Parse(entry)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", entry, err, want)
		}
	}
	t.Setenv(netguard.EnvAllow, "127.0.0.1/32,oops")
	if _, err := netguard.FromEnv(); err == nil || !strings.HasPrefix(err.Error(), `SLIPWAY_FETCH_ALLOW: entry "oops"`) {
		t.Errorf("FromEnv = %v, want an error naming the variable and the entry", err)
	}
	t.Setenv(netguard.EnvAllow, " 127.0.0.1/32 , ,[::1]:5000,Registry.LAN.:5000 ")
	p, err := netguard.FromEnv()
	if err != nil || p.String() != "127.0.0.1/32,[::1]:5000,Registry.LAN.:5000" {
		t.Errorf("FromEnv = %v, %v", p, err)
	}
	if err := p.Check("registry.lan", netip.MustParseAddrPort("10.9.9.9:5000")); err != nil {
		t.Errorf("a host:port entry is matched without case or trailing dot: %v", err)
	}
}

// listen starts a TCP server on loopback that answers "hello".
func listen(t *testing.T, network, addr string) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		testenv.Skip(t, "cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello")
			c.Close()
		}
	}()
	return ln, ln.Addr().(*net.TCPAddr).Port
}

func dial(t *testing.T, p *netguard.Policy, addr string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hello" {
		t.Errorf("read %q, %v from %s", b, err, addr)
	}
	return nil
}

// loopbackRefused listens on host, a loopback address, over network and
// dials it with no allow list: the dial must be refused, saying which
// SLIPWAY_FETCH_ALLOW entry (allow) would open it. It returns the address
// listened on, its port and the dial's error.
func loopbackRefused(t *testing.T, network, host, allow string) (addr string, port int, err error) {
	t.Helper()
	_, port = listen(t, network, net.JoinHostPort(host, "0"))
	addr = net.JoinHostPort(host, strconv.Itoa(port))
	err = dial(t, nil, addr)
	want := "refusing to connect to " + addr + " (loopback): set SLIPWAY_FETCH_ALLOW=" + allow + " to allow it"
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("default: %v\nwant an error ending %q", err, want)
	}
	return addr, port, err
}

// TestDialAllowList dials a real loopback server under allow lists by
// CIDR, address and host:port, and through a name that resolves to
// loopback.
func TestDialAllowList(t *testing.T) {
	addr, port, err := loopbackRefused(t, "tcp4", "127.0.0.1", "127.0.0.1/32")
	var re *netguard.RefusedError
	if !errors.As(err, &re) || re.Addr.String() != addr || re.Reason != "loopback" {
		t.Errorf("default: %#v, want a RefusedError for %s", re, addr)
	}

	for _, allow := range []string{"127.0.0.0/8", "127.0.0.1", "127.0.0.1/32", "::ffff:127.0.0.0/104", addr, "localhost:" + strconv.Itoa(port) + ",127.0.0.1:" + strconv.Itoa(port)} {
		if err := dial(t, netguard.MustParse(allow), addr); err != nil {
			t.Errorf("allow %q: %v", allow, err)
		}
	}
	// Another port of the same address stays closed to a host:port entry.
	other := "127.0.0.1:" + strconv.Itoa(port^1)
	if err := dial(t, netguard.MustParse(addr), other); err == nil || !strings.Contains(err.Error(), "refusing to connect to "+other+" (loopback)") {
		t.Errorf("allow %s, dial %s: %v", addr, other, err)
	}
	if err := dial(t, netguard.MustParse("10.0.0.0/8"), addr); err == nil {
		t.Errorf("allow 10.0.0.0/8 let %s through", addr)
	}

	// A name resolving to loopback is refused when it is dialed: the
	// check is of the resolved address.
	byName := "localhost:" + strconv.Itoa(port)
	err = dial(t, nil, byName)
	if !errors.As(err, &re) || re.Reason != "loopback" || re.Host != "localhost" || !re.Addr.Addr().IsLoopback() {
		t.Fatalf("dial %s: %v, want refused as loopback", byName, err)
	}
	if !strings.Contains(err.Error(), "(loopback, the address of localhost): set SLIPWAY_FETCH_ALLOW=") || !strings.HasSuffix(err.Error(), " (or "+byName+") to allow it") {
		t.Errorf("dial %s: %v, want the name in the message", byName, err)
	}
	// Opened by name, it connects.
	if err := dial(t, netguard.MustParse(byName), byName); err != nil {
		t.Errorf("allow %s: %v", byName, err)
	}
}

func TestDialIPv6Loopback(t *testing.T) {
	addr, _, _ := loopbackRefused(t, "tcp6", "::1", "::1/128")
	if err := dial(t, netguard.MustParse("::1/128"), addr); err != nil {
		t.Errorf("allow ::1/128: %v", err)
	}
}

// TestRedirects: a server the list opens redirecting to one it does not is
// refused at the second hop; a redirect to another scheme is refused
// outright; a redirect within what is open is followed.
func TestRedirects(t *testing.T) {
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "secret")
	}))
	defer refused.Close()
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/elsewhere":
			http.Redirect(w, r, refused.URL+"/secret", http.StatusFound)
		case "/file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/final", http.StatusMovedPermanently)
		default:
			_, _ = io.WriteString(w, "final")
		}
	}))
	defer allowed.Close()
	allowedHost := strings.TrimPrefix(allowed.URL, "http://")
	refusedHost := strings.TrimPrefix(refused.URL, "http://")
	c := netguard.MustParse(allowedHost).Client(10 * time.Second)

	resp, err := c.Get(allowed.URL + "/here")
	if err != nil {
		t.Fatalf("redirect within the allowed server: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "final" {
		t.Errorf("body %q", b)
	}

	resp, err = c.Get(allowed.URL + "/elsewhere")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("followed a redirect to %s", refusedHost)
	}
	if re, ok := netguard.AsRefused(err); !ok || re.Addr.String() != refusedHost {
		t.Errorf("redirect to %s: %v, want it refused", refusedHost, err)
	}

	resp, err = c.Get(allowed.URL + "/file")
	if err == nil {
		resp.Body.Close()
		t.Fatal("followed a redirect to file://")
	}
	var rerr *netguard.RedirectError
	if !errors.As(err, &rerr) || !strings.Contains(err.Error(), "refusing the redirect from "+allowed.URL+"/file to file:///etc/passwd: only http and https are followed") {
		t.Errorf("redirect to file://: %v", err)
	}

	resp, err = c.Get(allowed.URL + "/loop")
	if err == nil {
		resp.Body.Close()
		t.Fatal("followed redirects forever")
	}
	if !errors.As(err, &rerr) || rerr.Reason != "stopped after 10 redirects" {
		t.Errorf("redirect loop: %v", err)
	}
}

// TestTransportIsShared: one transport per policy, so connections are
// pooled across callers.
func TestTransportIsShared(t *testing.T) {
	var p *netguard.Policy
	first := p.Transport()
	if p.Transport() != first {
		t.Error("the default policy's transport is not shared")
	}
	q := netguard.MustParse("10.0.0.0/8")
	firstQ := q.Transport()
	if q.Transport() != firstQ || firstQ == first {
		t.Error("a policy's transport is not its own")
	}
	if q.Transport().Proxy != nil {
		t.Error("the transport uses a proxy")
	}
}
