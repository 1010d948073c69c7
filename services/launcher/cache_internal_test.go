package launcher

import (
	"strings"
	"testing"

	"github.com/slipway/slipway/schemas"
)

// A catalog record is a bus reply: its SHA-256 and format become a cache
// file name only when they are what they claim to be.
func TestImageKeyRefusesWhatIsNotAnIDOrDigest(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	if key, err := imageKey(&schemas.Image{ID: 7, SHA256: sha, Format: "qcow2"}); err != nil || key != "image-7-"+sha+".qcow2" {
		t.Fatalf("imageKey = %q, %v", key, err)
	}
	for _, img := range []schemas.Image{
		{ID: 7, SHA256: "../../../../tmp/owned", Format: "raw"},
		{ID: 7, SHA256: strings.ToUpper(sha), Format: "raw"},
		{ID: 7, SHA256: sha, Format: "raw/../../x"},
		{ID: -1, SHA256: sha, Format: "raw"},
	} {
		if key, err := imageKey(&img); err == nil {
			t.Errorf("imageKey(%+v) = %q, want a refusal", img, key)
		}
	}
}
