package cli

import (
	"strings"
	"testing"

	"github.com/slipway/slipway/tools/slipway/render"
)

// TestPlanDownload: what a download streams, converts or refuses, with
// the message each refusal gives.
func TestPlanDownload(t *testing.T) {
	disk := func(format string) render.Image {
		return render.Image{ID: 7, Name: "d", Type: "OS", State: "READY", Format: format, Source: "s3://b/k"}
	}
	for _, c := range []struct {
		name   string
		img    render.Image
		want   string
		stream bool
		err    string
	}{
		{"same format streams", disk("qcow2"), "qcow2", true, ""},
		{"no format streams", disk("vmdk"), "", true, ""},
		{"iso as raw streams", disk("iso"), "raw", true, ""},
		{"qcow2 to vmdk converts", disk("qcow2"), "vmdk", false, ""},
		{"luks as luks streams", disk("luks"), "luks", true, ""},
		{"luks to raw refused", disk("luks"), "raw", false, "LUKS-encrypted: it downloads only as its ciphertext"},
		{"raw to luks refused", disk("raw"), "luks", false, "cannot be made luks by a download"},
		{"a kernel with a format refused", render.Image{ID: 1, Type: "KERNEL", State: "READY", Format: "raw", Source: "s3://b/k"}, "qcow2", false, "is a KERNEL file, not a disk"},
		{"a LOCKED image refused", render.Image{ID: 1, Type: "OS", State: "LOCKED", Format: "raw", Source: "s3://b/k"}, "", false, "is LOCKED: only a READY or USED image"},
		{"no source refused", render.Image{ID: 1, Type: "OS", State: "READY", Format: "raw"}, "", false, "has no data"},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, err := parseDownloadFormat(c.want)
			if err != nil {
				t.Fatal(err)
			}
			p, err := planDownload(c.img, want)
			switch {
			case c.err != "":
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
			case err != nil:
				t.Fatal(err)
			case p.stream != c.stream:
				t.Errorf("stream %v, want %v", p.stream, c.stream)
			case !p.stream && (string(p.from) != c.img.Format || string(p.to) != c.want):
				t.Errorf("converts %s to %s", p.from, p.to)
			}
		})
	}
	if _, err := parseDownloadFormat("vhd"); err != nil {
		t.Error("vhd is refused")
	}
	if _, err := parseDownloadFormat("qed"); err == nil {
		t.Error("qed is accepted")
	}
}
