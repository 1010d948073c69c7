package builder

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/slipway/slipway/pkg/netguard"
)

func TestConfigFromEnv(t *testing.T) {
	t.Setenv(EnvRegistryMirrors, "docker.io=127.0.0.1:5001, 10.0.0.9:5000; ghcr.io=cache.local")
	t.Setenv(EnvRegistryInsecure, "registry.lan:5000, other.lan")
	t.Setenv(EnvGuestInit, "/opt/slipway-init")
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"docker.io": {"127.0.0.1:5001", "10.0.0.9:5000"}, "ghcr.io": {"cache.local"}}
	if !reflect.DeepEqual(cfg.Registry.Mirrors, want) || cfg.GuestInit != "/opt/slipway-init" ||
		!reflect.DeepEqual(cfg.InsecureRegistries, []string{"registry.lan:5000", "other.lan"}) {
		t.Fatalf("config = %+v", cfg)
	}
	s := &Service{cfg: cfg}
	if !s.insecure("registry.lan:5000/team/app@sha256:"+strings.Repeat("a", 64)) || s.insecure("docker.io/library/nginx:1") {
		t.Fatal("insecure registries are not matched by host")
	}
	if err := cfg.Registry.Guard.Check("", netip.MustParseAddrPort("127.0.0.1:5000")); err == nil {
		t.Error("loopback is open without SLIPWAY_FETCH_ALLOW")
	}
	t.Setenv(netguard.EnvAllow, "127.0.0.1:5000")
	if cfg, err = ConfigFromEnv(); err != nil || cfg.Registry.Guard.Check("", netip.MustParseAddrPort("127.0.0.1:5000")) != nil {
		t.Errorf("SLIPWAY_FETCH_ALLOW=127.0.0.1:5000: %v, %v", cfg.Registry.Guard, err)
	}
	t.Setenv(netguard.EnvAllow, "127.0.0.1:http")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "SLIPWAY_FETCH_ALLOW: entry \"127.0.0.1:http\"") {
		t.Errorf("bad SLIPWAY_FETCH_ALLOW: %v", err)
	}
	t.Setenv(netguard.EnvAllow, "")
	t.Setenv(EnvRegistryMirrors, "docker.io")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvRegistryMirrors) {
		t.Fatalf("bad mirrors: %v", err)
	}
	t.Setenv(EnvRegistryMirrors, "")
	if cfg.Ext4Writer != Ext4WriterNative {
		t.Errorf("default ext4 writer %q, want %q", cfg.Ext4Writer, Ext4WriterNative)
	}
	t.Setenv(EnvExt4Writer, "mkfs")
	if cfg, err = ConfigFromEnv(); err != nil || cfg.Ext4Writer != Ext4WriterMkfs {
		t.Errorf("%s=mkfs: %q, %v", EnvExt4Writer, cfg.Ext4Writer, err)
	}
	t.Setenv(EnvExt4Writer, "debugfs")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvExt4Writer+`="debugfs"`) {
		t.Errorf("bad %s: %v", EnvExt4Writer, err)
	}
}

func TestOSReleaseID(t *testing.T) {
	for in, want := range map[string]string{
		"NAME=Debian\nID=debian\n":        "debian",
		"ID=\"rhel\"\nID_LIKE=fedora\n":   "rhel",
		"ID='opensuse-leap'\n":            "opensuse-leap",
		"  ID=Ubuntu  \n":                 "ubuntu",
		"ID=\"../../etc\"\n":              "",
		"NAME=nothing\nVERSION_ID=3.20\n": "",
	} {
		if got := osReleaseID([]byte(in)); got != want {
			t.Errorf("osReleaseID(%q) = %q, want %q", in, got, want)
		}
	}
}

// An absolute os-release symlink resolves inside the root, never to the
// host's file; a FIFO is not waited on.
func TestReadOSReleaseStaysInRoot(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755))
	must(os.Symlink("/usr/lib/os-release", filepath.Join(root, "etc/os-release")))
	must(os.WriteFile(filepath.Join(root, "usr/lib/os-release"), []byte("ID=inside\n"), 0o644))
	if got := readOSReleaseID(root); got != "inside" {
		t.Fatalf("got %q, want the root's own os-release", got)
	}
	must(os.Remove(filepath.Join(root, "usr/lib/os-release")))
	if got := readOSReleaseID(root); got != "" {
		t.Fatalf("got %q: the host's os-release was read", got)
	}
	must(os.Remove(filepath.Join(root, "etc/os-release")))
	must(syscall.Mkfifo(filepath.Join(root, "etc/os-release"), 0o644))
	if got := readOSReleaseID(root); got != "" {
		t.Fatalf("a FIFO gave %q", got)
	}
}
