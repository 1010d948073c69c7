package vmtemplate

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/slipway/slipway/pkg/onetemplate"
)

// DefaultRestricted are the attributes refused unless the operator allows them, like
// OpenNebula's VM_RESTRICTED_ATTR: RAW passes text to QEMU; the others name host paths
// (a kernel, an initrd, an emulator binary, a disk source, context files), which the
// launcher never opens even when they are allowed.
var DefaultRestricted = []string{"RAW", "EMULATOR", "OS/KERNEL", "OS/INITRD", "OS/BOOTLOADER",
	"DISK/SOURCE", "CONTEXT/FILES"}

var restrictedRe = regexp.MustCompile(`^[A-Z0-9_]+(/[A-Z0-9_]+)?$`)

// ParseRestricted reads a restricted-attribute list: comma- or blank-separated names,
// ATTR or VECTOR/ATTR, case-insensitive. "" gives DefaultRestricted; "none" restricts
// nothing.
func ParseRestricted(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return append([]string(nil), DefaultRestricted...), nil
	case "none":
		return []string{}, nil
	}
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		n := strings.ToUpper(f)
		if !restrictedRe.MatchString(n) {
			return nil, fmt.Errorf("restricted attribute %q must be NAME or VECTOR/NAME (letters, digits, '_')", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Restricted returns the attributes of the template text that the list restricts, in the
// order of the text ("RAW", "OS/KERNEL"…). A listed vector name (DISK) restricts the whole
// vector; an empty value counts as given.
func Restricted(text string, restricted []string) ([]string, error) {
	if len(restricted) == 0 {
		return nil, nil
	}
	tpl, err := onetemplate.ParseString(text)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	set := map[string]bool{}
	for _, r := range restricted {
		set[strings.ToUpper(r)] = true
	}
	var used []string
	seen := map[string]bool{}
	add := func(n string) {
		if set[n] && !seen[n] {
			seen[n] = true
			used = append(used, n)
		}
	}
	for _, a := range tpl.Attrs {
		name := strings.ToUpper(a.Name)
		add(name)
		for k := range a.Vector {
			add(name + "/" + strings.ToUpper(k))
		}
	}
	return used, nil
}
