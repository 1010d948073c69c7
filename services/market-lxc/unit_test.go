package marketlxc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/marketfake"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
)

// TestApplianceTemplateKeepsIndexTextOutOfSyntax feeds the conversion of
// an appliance's opennebula_template values and names that try to close
// the quotes or the vector, start a new attribute or comment: the text
// reads back as the same attributes, with names that are not names left
// out, and the appliance's DISK and NAME replaced by the import's.
func TestApplianceTemplateKeepsIndexTextOutOfSyntax(t *testing.T) {
	doc := map[string]any{
		"CPU":              "1\"\nRAW = [ DATA = \"evil\" ]\n#",
		"MEMORY":           float64(128),
		"CONTEXT":          map[string]any{"NETWORK": "YES", "X\"] RAW=[": "no", "START": `a\", B = "c`},
		"NIC":              []any{map[string]any{"NETWORK": "a"}, map[string]any{"NETWORK": "b"}, "not a vector"},
		"RAW = [ X = 1 ] ": "bad name",
		"DISK":             map[string]any{"IMAGE": "theirs"},
		"NAME":             "theirs",
		"DEEP":             map[string]any{"A": map[string]any{"B": "c"}},
		"ENABLED":          true,
	}
	text, err := applianceTemplate(doc)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := onetemplate.ParseString(text)
	if err != nil {
		t.Fatalf("%v:\n%s", err, text)
	}
	if v, _ := tmpl.Get("CPU"); v != doc["CPU"] {
		t.Errorf("CPU = %q, want the value whole", v)
	}
	if v, _ := tmpl.Get("MEMORY"); v != "128" {
		t.Errorf("MEMORY = %q", v)
	}
	if v, _ := tmpl.Get("ENABLED"); v != "YES" {
		t.Errorf("ENABLED = %q", v)
	}
	ctx := tmpl.Vectors("CONTEXT")
	if len(ctx) != 1 || len(ctx[0]) != 2 || ctx[0]["START"] != `a\", B = "c` || ctx[0]["NETWORK"] != "YES" {
		t.Errorf("CONTEXT = %v", ctx)
	}
	if nics := tmpl.Vectors("NIC"); len(nics) != 2 || nics[1]["NETWORK"] != "b" {
		t.Errorf("NIC = %v", nics)
	}
	for _, name := range []string{"RAW", "DISK", "NAME", "DEEP"} {
		for _, a := range tmpl.Attrs {
			if a.Name == name {
				t.Errorf("%s came through: %+v", name, a)
			}
		}
	}
	vm, err := oneDriver{}.VMTemplate(market.Market{}, market.App{VMTemplate: text}, "mine", []market.Disk{{ID: 7}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := onetemplate.ParseString(vm)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := out.Get("NAME"); n != "mine" || len(out.Vectors("DISK")) != 1 || out.Vectors("DISK")[0]["IMAGE_ID"] != "7" {
		t.Errorf("VM template:\n%s", vm)
	}
}

// TestValidate checks each driver's defaults and refusals.
func TestValidate(t *testing.T) {
	s := &Service{cfg: Config{}}
	mk := market.Market{Mad: schemas.MarketMADLinuxcontainers}
	if err := (lxcDriver{s}).Validate(&mk); err != nil || mk.Endpoint != DefaultLXCEndpoint || mk.Variant != "default" || len(mk.Arches) != 1 {
		t.Errorf("linuxcontainers defaults: %+v, %v", mk, err)
	}
	for _, c := range []struct {
		d    market.Driver
		mk   market.Market
		want string
	}{
		{lxcDriver{s}, market.Market{Endpoint: "http://user:pw@images.example"}, "user info"},
		{newTurnKeyDriver(s), market.Market{Arches: []string{"amd64", "arm64"}}, "one architecture"},
		{newTurnKeyDriver(s), market.Market{Variant: "cloud"}, "no variant"},
		{oneDriver{s}, market.Market{Arches: []string{"amd64"}}, "no variant, FTYPE or architectures"},
		{oneDriver{s}, market.Market{Endpoint: "https://marketplace.example/?x=1"}, "query"},
	} {
		if err := c.d.Validate(&c.mk); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%T %+v: %v, want %q", c.d, c.mk, err, c.want)
		}
	}
	tk := market.Market{}
	if err := newTurnKeyDriver(s).Validate(&tk); err != nil || tk.Endpoint != DefaultTurnKeyEndpoint {
		t.Errorf("turnkeylinux defaults: %+v, %v", tk, err)
	}
}

// TestImageCreateRefusesUnverified: an app without a checksum, or whose
// source is not an http(s) URL, is not imported whatever its record says.
func TestImageCreateRefusesUnverified(t *testing.T) {
	for _, app := range []market.App{
		{Name: "a", Source: "https://images.example/a.tar.xz"},
		{Name: "b", Source: "file:///etc/passwd", Checksums: []string{"sha256:" + strings.Repeat("0", 64)}},
		{Name: "c", Source: "https://u:p@images.example/c", Checksums: []string{"sha256:" + strings.Repeat("0", 64)}},
	} {
		if _, err := rootfsImage(app, market.AppImport{}); err == nil || !strings.Contains(err.Error(), "app "+app.Name) {
			t.Errorf("%+v: %v", app, err)
		}
	}
	c, err := rootfsImage(market.App{Name: "d", Source: "https://images.example/d", Checksums: []string{"sha256:" + strings.Repeat("0", 64)}},
		market.AppImport{SizeMiB: 512, Filesystem: schemas.FilesystemXFS, Format: schemas.DiskFormatRaw})
	if err != nil || !c.Rootfs || c.SizeMiB != 512 || c.FS != schemas.FilesystemXFS || c.Format != schemas.DiskFormatRaw || len(c.Checksums) != 1 {
		t.Errorf("rootfs image-create: %+v, %v", c, err)
	}
}

// TestTurnKeyKeyringFromEnv reads SLIPWAY_MARKET_TURNKEY_KEYRING: a file
// of public keys is the keyring; a missing file, or one that is no
// keyring, is an error naming the variable.
func TestKeyringsFromEnv(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "keys.asc")
	if err := os.WriteFile(good, marketfake.NewSigner(t, "Signer").PublicKey(t), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.asc")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, keyring := range map[string]func(Config) *pgpverify.Keyring{
		EnvTurnKeyKeyring: func(c Config) *pgpverify.Keyring { return c.TurnKeyKeyring },
		EnvLXCKeyring:     func(c Config) *pgpverify.Keyring { return c.LXCKeyring },
	} {
		t.Setenv(name, good)
		cfg, err := ConfigFromEnv()
		if err != nil || keyring(cfg) == nil || len(keyring(cfg).Fingerprints()) != 1 {
			t.Fatalf("%s: %+v, %v", name, keyring(cfg), err)
		}
		for _, path := range []string{filepath.Join(dir, "missing.asc"), bad} {
			t.Setenv(name, path)
			if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%s: %v", name, path, err)
			}
		}
		t.Setenv(name, "")
	}
}
