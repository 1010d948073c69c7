package guestinit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// User is a resolved container user: who the process runs as.
type User struct {
	Name   string // empty when the user is not in /etc/passwd
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, from /etc/group
	Home   string
}

// passwdEntry and groupEntry are the fields of /etc/passwd and /etc/group
// the init needs.
type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// ResolveUser resolves a Docker USER spec ("", "name", "uid", "name:group",
// "uid:gid", and mixes) against the image's passwd and group databases,
// either of which may be nil (scratch and distroless images have none).
// Numeric ids always work; names must exist. As in Docker, a user not in
// passwd gets gid 0 and home "/", and supplementary groups are the groups
// that list the user's name.
func ResolveUser(spec string, passwd, group io.Reader) (*User, error) {
	users, err := parsePasswd(passwd)
	if err != nil {
		return nil, err
	}
	groups, err := parseGroup(group)
	if err != nil {
		return nil, err
	}
	uspec, gspec, hasGroup := strings.Cut(spec, ":")
	if uspec == "" {
		uspec = "0"
	}
	u, err := lookupUser(uspec, users)
	if err != nil {
		return nil, err
	}
	if hasGroup {
		if u.GID, err = lookupGroup(gspec, groups); err != nil {
			return nil, err
		}
	}
	u.Groups = supplementaryGroups(u.Name, u.GID, groups)
	return u, nil
}

func lookupUser(spec string, users []passwdEntry) (*User, error) {
	id, numErr := parseID(spec)
	for _, e := range users {
		if (numErr == nil && e.uid == id) || (numErr != nil && e.name == spec) {
			return &User{Name: e.name, UID: e.uid, GID: e.gid, Home: e.home}, nil
		}
	}
	if numErr != nil {
		if users == nil {
			return nil, fmt.Errorf("user %q: the image has no /etc/passwd; use a numeric uid", spec)
		}
		return nil, fmt.Errorf("user %q: not found in /etc/passwd", spec)
	}
	return &User{UID: id, GID: 0, Home: "/"}, nil
}

func lookupGroup(spec string, groups []groupEntry) (uint32, error) {
	if id, err := parseID(spec); err == nil {
		return id, nil
	}
	for _, g := range groups {
		if g.name == spec {
			return g.gid, nil
		}
	}
	if groups == nil {
		return 0, fmt.Errorf("group %q: the image has no /etc/group; use a numeric gid", spec)
	}
	return 0, fmt.Errorf("group %q: not found in /etc/group", spec)
}

func supplementaryGroups(name string, primary uint32, groups []groupEntry) []uint32 {
	out := []uint32{primary}
	if name == "" {
		return out
	}
	for _, g := range groups {
		for _, m := range g.members {
			if m == name && !slices.Contains(out, g.gid) {
				out = append(out, g.gid)
			}
		}
	}
	return out
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// parsePasswd reads name:pw:uid:gid:gecos:home:shell lines; malformed lines
// are skipped, as libc does.
func parsePasswd(r io.Reader) ([]passwdEntry, error) {
	if r == nil {
		return nil, nil
	}
	users := []passwdEntry{}
	err := eachLine(r, func(f []string) {
		if len(f) < 6 {
			return
		}
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 != nil || err2 != nil || f[0] == "" {
			return
		}
		users = append(users, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
	})
	if err != nil {
		return nil, fmt.Errorf("/etc/passwd: %w", err)
	}
	return users, nil
}

// parseGroup reads name:pw:gid:member,member lines.
func parseGroup(r io.Reader) ([]groupEntry, error) {
	if r == nil {
		return nil, nil
	}
	groups := []groupEntry{}
	err := eachLine(r, func(f []string) {
		if len(f) < 3 {
			return
		}
		gid, err := parseID(f[2])
		if err != nil || f[0] == "" {
			return
		}
		g := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			g.members = strings.Split(f[3], ",")
		}
		groups = append(groups, g)
	})
	if err != nil {
		return nil, fmt.Errorf("/etc/group: %w", err)
	}
	return groups, nil
}

func eachLine(r io.Reader, fn func(fields []string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	return sc.Err()
}

// openOptional opens path, returning a nil reader (not an error) when it
// does not exist. The caller closes a non-nil file.
func openOptional(path string) (*os.File, io.Reader, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return f, f, nil
}
