package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/slipway/slipway/schemas"
)

// TestShowAppDiskAttributes: app show prints what an import of a disk app
// gives its image (one's DATABLOCK, dev prefix and driver), and leaves out
// what an app does not say.
func TestShowAppDiskAttributes(t *testing.T) {
	var out bytes.Buffer
	app := schemas.MarketApp{ID: 7, Name: "db", Source: "https://m.example/appliance/x/download/0", Kind: schemas.MarketAppKindDisk,
		ImageType: schemas.ImageTypeDatablock, DevPrefix: "vd", Driver: "qcow2"}
	if err := showApp(&out, app, schemas.Market{ID: 0, Name: "OpenNebula Public"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"IMAGE TYPE", "DATABLOCK", "DEV_PREFIX", "vd", "DRIVER", "qcow2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("app show lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	app.ImageType, app.DevPrefix, app.Driver = "", "", ""
	if err := showApp(&out, app, schemas.Market{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "DEV_PREFIX") || strings.Contains(out.String(), "IMAGE TYPE") {
		t.Errorf("app show prints empty attributes:\n%s", out.String())
	}
}
