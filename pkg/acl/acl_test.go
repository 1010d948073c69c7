package acl

import (
	"errors"
	"strings"
	"testing"
)

func TestParseOctal(t *testing.T) {
	for in, want := range map[string]Perms{"640": 0o640, "000": 0, "777": 0o777, "604": 0o604} {
		got, err := ParseOctal(in)
		if err != nil || got != want || got.Octal() != in {
			t.Errorf("ParseOctal(%q) = %o, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "64", "6400", "800", "-40", "6 4", "0o6", "abc"} {
		if _, err := ParseOctal(bad); err == nil {
			t.Errorf("ParseOctal(%q) accepted", bad)
		}
	}
}

func TestTripletsAndUmask(t *testing.T) {
	if p := New(DefaultUmask); p != 0o600 || p.String() != "um-------" {
		t.Errorf("default permissions %s (%s)", p.Octal(), p)
	}
	if got := Perms(0o751).Triplets(); got != [3]string{"uma", "u-a", "--a"} {
		t.Errorf("0751 = %v", got)
	}
}

// TestAllowed walks OpenNebula's rules: owner, group and other bits, any
// of which grants; the oneadmin group passes everything.
func TestAllowed(t *testing.T) {
	bob := Object{Kind: "image", ID: 7, Owner: "bob", Group: "users", Perms: 0o600}
	alice := User{Name: "alice", Groups: []string{"users"}}
	owner := User{Name: "bob", Groups: []string{"staff"}}
	admin := User{Name: "carol", Groups: []string{"users", AdminGroup}}
	cases := []struct {
		u    User
		p    Perms
		l    Level
		want bool
	}{
		{alice, 0o600, Use, false}, {alice, 0o600, Manage, false},
		{owner, 0o600, Use, true}, {owner, 0o600, Manage, true}, {owner, 0o600, Admin, false},
		{alice, 0o640, Use, true}, {alice, 0o640, Manage, false},
		{alice, 0o604, Use, true}, {alice, 0o604, Manage, false}, {alice, 0o606, Manage, true},
		{alice, 0o601, Admin, true}, {alice, 0o610, Admin, true}, {alice, 0o700, Admin, false},
		{owner, 0o060, Use, false}, // the owner's bits are the owner's; bob is not in group users
		{admin, 0o000, Admin, true},
	}
	for _, c := range cases {
		o := bob
		o.Perms = c.p
		if got := Allowed(c.u, o, c.l); got != c.want {
			t.Errorf("%s %s on %s: %v, want %v", c.u.Name, c.l, c.p.Octal(), got, c.want)
		}
	}
}

func TestCheckSaysWhy(t *testing.T) {
	err := Check(User{Name: "alice", Groups: []string{"users"}}, Object{Kind: "image", ID: 7, Owner: "bob", Group: "users", Perms: 0o640}, Manage, "image-delete")
	var d *Denied
	if !errors.As(err, &d) || !strings.Contains(err.Error(), "user alice may not manage image 7") ||
		!strings.Contains(err.Error(), "owner bob, group users, permissions um-u-----") {
		t.Errorf("%v", err)
	}
}

func TestLevelOf(t *testing.T) {
	for name, want := range map[string]Level{"use": Use, "manage": Manage, "admin": Admin, "": Use, "root": Use} {
		if got := LevelOf(name); got != want {
			t.Errorf("LevelOf(%q) = %s, want %s", name, got, want)
		}
	}
}

func TestChmodLevelAndPermsOf(t *testing.T) {
	for _, c := range []struct {
		old, new string
		want     Level
	}{
		{"600", "640", Manage}, {"600", "604", Manage}, {"600", "700", Admin}, {"710", "600", Admin}, {"611", "651", Manage},
	} {
		if got := ChmodLevel(PermsOf(c.old), PermsOf(c.new)); got != c.want {
			t.Errorf("chmod %s to %s needs %v, want %v", c.old, c.new, got, c.want)
		}
	}
	if PermsOf("") != 0o600 || PermsOf("9x") != 0o600 || PermsOf("644") != 0o644 {
		t.Errorf("PermsOf: %v %v %v", PermsOf(""), PermsOf("9x"), PermsOf("644"))
	}
}
