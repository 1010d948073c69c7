package tree

import (
	"fmt"
	"strings"
)

// The checks below are what a rootfs entry must satisfy before any
// builder turns it into a script, a protofile or an argv: a layer, an
// appliance tarball or a disk is hostile, and its names must stay data. The
// encoders of each script language (package fsimage) check again for what
// their language cannot carry; these checks are the floor every builder
// shares.

// Limits of Linux's xattr interface (XATTR_NAME_MAX, XATTR_SIZE_MAX) and of
// a path component and a symlink target (NAME_MAX, PATH_MAX - 1).
const (
	MaxXattrName  = 255
	MaxXattrValue = 64 << 10
	MaxName       = 255
	MaxLink       = 4095
)

// XattrNamespaces are the xattr namespaces a guest filesystem may carry:
// user attributes, file capabilities and security labels, and trusted
// (overlayfs and friends). system.* (ACLs as the kernel encodes them) and
// anything else is refused.
var XattrNamespaces = []string{"user.", "trusted.", "security."}

// CheckName checks one path component: not empty, not "." or "..", no "/",
// no NUL and no control character, at most MaxName bytes.
func CheckName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("name %q is not a file name", name)
	case len(name) > MaxName:
		return fmt.Errorf("name %.40q… is %d bytes, longer than %d", name, len(name), MaxName)
	case strings.Contains(name, "/"):
		return fmt.Errorf("name %q holds a slash", name)
	}
	if i := ControlByte(name); i >= 0 {
		return fmt.Errorf("name %q holds the control character %#02x", name, name[i])
	}
	return nil
}

// CheckPath checks every component of a path in Clean form.
func CheckPath(p string) error {
	if p == "." {
		return nil
	}
	for _, c := range strings.Split(p, "/") {
		if err := CheckName(c); err != nil {
			return err
		}
	}
	return nil
}

// CheckLink checks a symlink target: not empty, no NUL and no control
// character, at most MaxLink bytes. Where it points is the flattener's
// business.
func CheckLink(target string) error {
	switch {
	case target == "":
		return fmt.Errorf("empty symlink target")
	case len(target) > MaxLink:
		return fmt.Errorf("symlink target is %d bytes, longer than %d", len(target), MaxLink)
	}
	if i := ControlByte(target); i >= 0 {
		return fmt.Errorf("symlink target %q holds the control character %#02x", target, target[i])
	}
	return nil
}

// CheckXattr checks an extended attribute: its name is in one of
// XattrNamespaces, with a non-empty rest of printable ASCII (space
// included), at most MaxXattrName bytes; its value (any bytes) is at most
// MaxXattrValue bytes.
func CheckXattr(name, value string) error {
	ns := ""
	for _, p := range XattrNamespaces {
		if strings.HasPrefix(name, p) {
			ns = p
		}
	}
	switch {
	case ns == "":
		return fmt.Errorf("xattr %q is not in the %s namespaces", name, strings.Join(XattrNamespaces, ", "))
	case len(name) == len(ns):
		return fmt.Errorf("xattr %q has nothing after its namespace", name)
	case len(name) > MaxXattrName:
		return fmt.Errorf("xattr name %.40q… is %d bytes, longer than %d", name, len(name), MaxXattrName)
	case len(value) > MaxXattrValue:
		return fmt.Errorf("xattr %q: value of %d bytes, more than %d", name, len(value), MaxXattrValue)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("xattr name %q holds the byte %#02x: only printable ASCII is allowed", name, c)
		}
	}
	return nil
}

// CheckEntry checks everything of e that reaches a builder as text: its
// path, its link target and its xattrs.
func CheckEntry(e *Entry) error {
	if err := CheckPath(e.Path); err != nil {
		return err
	}
	switch e.Type {
	case Symlink:
		if err := CheckLink(e.Link); err != nil {
			return err
		}
	case Hardlink:
		if err := CheckPath(e.Link); err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
	}
	for k, v := range e.Xattrs {
		if err := CheckXattr(k, v); err != nil {
			return err
		}
	}
	return nil
}

// ControlByte returns the index of the first NUL, C0 control character or
// DEL in s, or -1.
func ControlByte(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return i
		}
	}
	return -1
}
