// Package acl is OpenNebula's authorization of objects, written once for
// every service: an object has an owner, a group and nine permission bits
// (use, manage and admin for its owner, its group and everyone else), and
// an operation needs one of three levels. Services decide which level each
// operation needs; this package decides whether a user has it.
//
// The rules are OpenNebula's: a member of the oneadmin group passes every
// check; otherwise the owner's bits apply to the owner, the group's bits to
// members of the object's group, and the other bits to everyone, and any
// one of them that grants the level is enough.
package acl

import (
	"fmt"
	"slices"
	"strings"
)

// Level is what an operation needs.
type Level uint8

// The levels, as OpenNebula names them.
const (
	Use Level = iota
	Manage
	Admin
)

func (l Level) String() string {
	switch l {
	case Use:
		return "use"
	case Manage:
		return "manage"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("level(%d)", l)
}

// LevelOf reads a level by its name ("use", "manage", "admin"), as the
// schemas' x-slipway access says it; anything else is the least, use.
func LevelOf(name string) Level {
	switch name {
	case "manage":
		return Manage
	case "admin":
		return Admin
	}
	return Use
}

// AdminGroup is the group whose members pass every check.
const AdminGroup = "oneadmin"

// AdminUser is the user that exists from the start, in AdminGroup.
const AdminUser = "oneadmin"

// DefaultGroup is the group new users join unless told otherwise.
const DefaultGroup = "users"

// Perms are the nine bits as OpenNebula writes them in octal: three digits
// for owner, group and other, each the sum of use (4), manage (2) and
// admin (1). 0640 is owner use+manage, group use.
type Perms uint16

// DefaultUmask is OpenNebula's: new objects are 0600, owner um-.
const DefaultUmask Perms = 0o177

// New is the permissions of a new object under umask.
func New(umask Perms) Perms { return 0o777 &^ umask }

// ParseOctal reads chmod's argument: three octal digits, e.g. "640".
func ParseOctal(s string) (Perms, error) {
	if len(s) != 3 || strings.Trim(s, "01234567") != "" {
		return 0, fmt.Errorf("permissions %q: want three octal digits (owner, group, other; use=4 manage=2 admin=1), e.g. 640", s)
	}
	var p Perms
	for _, c := range s {
		p = p<<3 | Perms(c-'0')
	}
	return p, nil
}

// PermsOf reads recorded bits (Octal's form); an object recorded before it
// had any (empty or unreadable) is its owner's alone, as new objects are:
// New(DefaultUmask).
func PermsOf(recorded string) Perms {
	if p, err := ParseOctal(recorded); err == nil {
		return p
	}
	return New(DefaultUmask)
}

// ChmodLevel is what changing an object's bits from old to new needs:
// manage, or admin when an admin bit changes, as in OpenNebula.
func ChmodLevel(old, new Perms) Level {
	const adminBits Perms = 0o111
	if old&adminBits != new&adminBits {
		return Admin
	}
	return Manage
}

// Octal is p as chmod takes it: "640".
func (p Perms) Octal() string { return fmt.Sprintf("%03o", p&0o777) }

// Triplets are p as `oneimage show` prints it: owner, group and other, each
// like "um-".
func (p Perms) Triplets() [3]string {
	var out [3]string
	for i := range out {
		d := p >> (3 * (2 - i)) & 7
		out[i] = bit(d, 4, "u") + bit(d, 2, "m") + bit(d, 1, "a")
	}
	return out
}

// String is the three triplets run together: "um-u-----".
func (p Perms) String() string { t := p.Triplets(); return t[0] + t[1] + t[2] }

func bit(d, b Perms, s string) string {
	if d&b != 0 {
		return s
	}
	return "-"
}

// grants reports whether digit d (one of owner, group, other) holds l.
func grants(d Perms, l Level) bool {
	switch l {
	case Use:
		return d&4 != 0
	case Manage:
		return d&2 != 0
	case Admin:
		return d&1 != 0
	}
	return false
}

// Object is what is checked: who owns it, its group and its permissions.
type Object struct {
	Kind  string // what it is, for messages: "image", "VM"
	ID    int64
	Owner string
	Group string
	Perms Perms
}

// User is who asks: their name and every group they are in, the primary
// one first.
type User struct {
	Name   string
	Groups []string
}

// IsAdmin reports whether u is in the oneadmin group.
func (u User) IsAdmin() bool { return slices.Contains(u.Groups, AdminGroup) }

// Allowed reports whether u may do what needs l on o.
func Allowed(u User, o Object, l Level) bool {
	switch {
	case u.IsAdmin():
		return true
	case u.Name == o.Owner && grants(o.Perms>>6&7, l):
		return true
	case slices.Contains(u.Groups, o.Group) && grants(o.Perms>>3&7, l):
		return true
	}
	return grants(o.Perms&7, l)
}

// Denied is the error of a refused check: it names the user, the level, the
// object and what it allows, so the user sees why.
type Denied struct {
	User   string
	Level  Level
	Object Object
	Op     string
}

func (e *Denied) Error() string {
	return fmt.Sprintf("%s: user %s may not %s %s %d (owner %s, group %s, permissions %s)",
		e.Op, e.User, e.Level, e.Object.Kind, e.Object.ID, e.Object.Owner, e.Object.Group, e.Object.Perms)
}

// Check is Allowed as an error: nil, or a *Denied for operation op.
func Check(u User, o Object, l Level, op string) error {
	if Allowed(u, o, l) {
		return nil
	}
	return &Denied{User: u.Name, Level: l, Object: o, Op: op}
}
