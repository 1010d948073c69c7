package cli

import (
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/tools/slipway/render"
)

func TestParseLayout(t *testing.T) {
	for in, want := range map[string]oci.Layout{
		"": oci.KubeVirtLayout, "kubevirt": oci.KubeVirtLayout, "KubeVirt": oci.KubeVirtLayout,
		"rancher": oci.RancherVMLayout, "ranchervm": oci.RancherVMLayout,
	} {
		got, err := parseLayout(in)
		if err != nil || got != want {
			t.Errorf("parseLayout(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if _, err := parseLayout("vmware"); err == nil || !strings.Contains(err.Error(), "kubevirt or rancher") {
		t.Errorf("parseLayout(vmware): %v", err)
	}
}

func TestCheckExportRef(t *testing.T) {
	for _, ok := range []string{"registry.local:5000/disks/app:1", "127.0.0.1:5000/app", "ghcr.io/org/disk:v1.2"} {
		if err := checkExportRef(ok, false); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for ref, want := range map[string]string{
		"":                                "give the reference",
		"r.local/app@sha256:" + zeros(64): "give a tag",
		"r.local/App:1":                   "want registry/repository",
		"r.local/app:bad tag":             "want registry/repository",
	} {
		if err := checkExportRef(ref, false); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkExportRef(%q) = %v, want an error saying %q", ref, err, want)
		}
	}
}

func zeros(n int) string { return strings.Repeat("0", n) }

func TestExportable(t *testing.T) {
	ready := render.Image{ID: 3, Name: "a", Type: "OS", State: "READY", Format: "qcow2", Source: "s3://b/k"}
	if f, err := exportable(ready); err != nil || f != "qcow2" {
		t.Fatalf("READY qcow2: %q, %v", f, err)
	}
	iso := ready
	iso.Type, iso.Format = "CDROM", "iso"
	if f, err := exportable(iso); err != nil || f != "raw" {
		t.Errorf("ISO: %q, %v; want raw", f, err)
	}
	for _, c := range []struct {
		mod  func(*render.Image)
		want string
	}{
		{func(i *render.Image) { i.State = "LOCKED" }, "is LOCKED, not READY"},
		{func(i *render.Image) { i.State, i.Error = "ERROR", "boom" }, "its error: boom"},
		{func(i *render.Image) { i.Type = "KERNEL" }, "KERNEL file, not a disk"},
		{func(i *render.Image) { i.Type = "CONTEXT" }, "CONTEXT file, not a disk"},
		{func(i *render.Image) { i.Format = "luks" }, "needs the image's secret"},
		{func(i *render.Image) { i.Format = "" }, "no recorded format"},
		{func(i *render.Image) { i.Format = "qed" }, `format "qed"`},
		{func(i *render.Image) { i.Source = "" }, "no data"},
	} {
		img := ready
		c.mod(&img)
		if _, err := exportable(img); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", img, err, c.want)
		}
	}
}

func TestReadPercent(t *testing.T) {
	in := "    (0.00/100%)\r    (12.50/100%)\r    (100.00/100%)\r\nnoise\n"
	var got []float64
	readPercent(strings.NewReader(in), func(p float64) { got = append(got, p) })
	if len(got) != 3 || got[0] != 0 || got[1] != 12.5 || got[2] != 100 {
		t.Fatalf("got %v", got)
	}
}
