package cli

import (
	"fmt"
	"io"

	"github.com/slipway/slipway/pkg/onetemplate"
)

// parseTemplate reads an OpenNebula image (or market) template into its
// attributes, keyed by upper-case name. Neither has vector attributes, so one is
// refused rather than silently dropped; of a repeated name the first
// counts, as onetemplate's Get reads it.
func parseTemplate(r io.Reader) (map[string]string, error) {
	t, err := onetemplate.Parse(r)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(t.Attrs))
	for _, a := range t.Attrs {
		if a.IsVector() {
			return nil, fmt.Errorf("%s = [ … ]: vector attributes have no meaning in an image or market template", a.Name)
		}
		if _, seen := out[a.Name]; !seen {
			out[a.Name] = a.Value
		}
	}
	return out, nil
}
