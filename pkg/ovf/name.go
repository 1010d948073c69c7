package ovf

import (
	"fmt"
	"strings"
	"unicode"
)

// MaxNameLength caps a file name of a package.
const MaxNameLength = 255

// CheckName refuses a file name that is not a plain name of a file inside
// the package: empty, too long, "." or "..", with a slash or a backslash
// (a path), a colon (a URL or a drive), a control character, or starting
// with a dash or a dot-dot. It is the one validator of names from an OVF,
// a manifest or an OVA's tar headers before they reach a path.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("an empty file name")
	case len(name) > MaxNameLength:
		return fmt.Errorf("file name %.40q… is longer than %d bytes", name, MaxNameLength)
	case name == "." || name == ".." || strings.HasPrefix(name, ".."):
		return fmt.Errorf("file name %q leaves the package", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("file name %q is a path: an OVF package names only files next to its descriptor", name)
	case strings.Contains(name, ":"):
		return fmt.Errorf("file name %q looks like a URL: an OVF package may reference only files inside it", name)
	case strings.HasPrefix(name, "-"):
		return fmt.Errorf("file name %q starts with a dash", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("file name %q holds a control or invalid character", name)
		}
	}
	return nil
}
