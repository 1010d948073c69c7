package simplestreams

import (
	"fmt"
	"strings"
)

// archNames maps Go and kernel spellings to the Debian-style names that
// images.linuxcontainers.org uses in its arch fields (amd64, arm64, armhf,
// i386, ppc64el, riscv64, s390x).
var archNames = map[string]string{
	"x86_64":  "amd64",
	"386":     "i386",
	"i686":    "i386",
	"aarch64": "arm64",
	"arm":     "armhf",
	"armv7l":  "armhf",
	"ppc64le": "ppc64el",
}

// Arch is arch in the spelling of images.linuxcontainers.org: Go ("amd64",
// "ppc64le", "386") and kernel ("x86_64", "aarch64") names are mapped, other
// names are returned lower-cased.
func Arch(arch string) string {
	a := strings.ToLower(strings.TrimSpace(arch))
	if n, ok := archNames[a]; ok {
		return n
	}
	return a
}

// ArchWanted reports whether arch is among wanted, compared in Arch's
// spelling; an empty wanted takes every arch.
func ArchWanted(arch string, wanted []string) bool {
	if len(wanted) == 0 {
		return true
	}
	a := Arch(arch)
	for _, w := range wanted {
		if Arch(w) == a {
			return true
		}
	}
	return false
}

// Name is the app name of a product: "<os>_<release>_<arch>_<variant>",
// lower case, e.g. "debian_bookworm_amd64_default" or
// "alpine_3.20_arm64_cloud". It depends only on the product's fields, so it
// is stable across refreshes and servers whatever their product key order.
// Each part must be non-empty and made of letters, digits, ".", "-" and "+";
// "_" separates the parts and so is not allowed inside one.
func Name(os, release, arch, variant string) (string, error) {
	parts := []string{os, release, Arch(arch), variant}
	for i, what := range []string{"os", "release", "arch", "variant"} {
		p := strings.ToLower(parts[i])
		if err := namePart(p); err != nil {
			return "", fmt.Errorf("%s %q: %v", what, shortName(parts[i]), err)
		}
		parts[i] = p
	}
	return strings.Join(parts, "_"), nil
}

func namePart(p string) error {
	if p == "" {
		return fmt.Errorf("empty")
	}
	if len(p) > 64 {
		return fmt.Errorf("longer than 64 bytes")
	}
	if p[0] == '.' || p[0] == '-' {
		return fmt.Errorf("starts with %q", p[0])
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+') {
			return fmt.Errorf("character %q not allowed in an app name", r)
		}
	}
	return nil
}

func shortName(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
