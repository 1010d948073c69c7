package launcher

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/slipway/slipway/services/launcher/qemu"
	"github.com/slipway/slipway/services/launcher/vmtemplate"
)

// DefaultQEMUUIDs is the range of numeric uids (gid = uid) QEMU runs as when the launcher
// is root: below 65536, so it exists in a container's user namespace too, and above the
// ids Debian's adduser hands out by default (1000-59999 grows from the bottom). An id
// that has an /etc/passwd entry is skipped.
const DefaultQEMUUIDs = "50000-59999"

// confinement is the launcher's policy state: the restricted template attributes and the
// uids handed to running QEMU processes.
type confinement struct {
	restricted []string
	err        error // a bad RestrictedAttr or QEMUUIDs, reported by Run
	first, n   uint32
	switchUser bool // the launcher is root: QEMU gets a uid of its own

	mu    sync.Mutex
	users map[int64]*qemuUser // VM ID → its QEMU's identity while QEMU runs
}

// qemuUser is one VM's QEMU identity; a pointer, so a late release of an earlier boot
// cannot take back a later boot's.
type qemuUser struct{ uid uint32 }

func newConfinement(cfg Config) *confinement {
	c := &confinement{users: map[int64]*qemuUser{}, switchUser: os.Geteuid() == 0}
	var errs []error
	var err error
	if c.restricted, err = vmtemplate.ParseRestricted(cfg.RestrictedAttr); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvRestrictedAttr, err))
	}
	if c.first, c.n, err = parseUIDRange(cfg.QEMUUIDs); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvQEMUUIDs, err))
	}
	c.err = errors.Join(errs...)
	return c
}

// parseUIDRange reads "first-last" (1 ≤ first ≤ last < 2^31).
func parseUIDRange(s string) (first, n uint32, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	f, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 31)
	l, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 31)
	if !ok || err1 != nil || err2 != nil || f == 0 || l < f {
		return 0, 0, fmt.Errorf("%q must be a uid range first-last, such as %s (not 0: QEMU must not run as root)", s, DefaultQEMUUIDs)
	}
	return uint32(f), uint32(l - f + 1), nil
}

// checkRestricted refuses a template using an attribute the operator restricts.
func (c *confinement) checkRestricted(text string) error {
	used, err := vmtemplate.Restricted(text, c.restricted)
	if err != nil {
		return err
	}
	if len(used) == 0 {
		return nil
	}
	verb := "is a restricted attribute"
	if len(used) > 1 {
		verb = "are restricted attributes"
	}
	return fmt.Errorf("%s %s: the launcher refuses it unless the operator leaves it out of %s (now %q)",
		strings.Join(used, ", "), verb, EnvRestrictedAttr, strings.Join(c.restricted, ","))
}

// assign picks the uid for a VM's QEMU: first + id mod n, then the next free one; an id
// that /etc/passwd knows is skipped. It returns nil when the launcher is not root.
func (c *confinement) assign(id int64) (*qemuUser, error) {
	if !c.switchUser {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	busy := map[uint32]bool{}
	for _, u := range c.users {
		busy[u.uid] = true
	}
	start := uint32(uint64(id) % uint64(c.n))
	for i := uint32(0); i < c.n; i++ {
		uid := c.first + (start+i)%c.n
		if busy[uid] {
			continue
		}
		if _, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
			continue // a real account: not ours to use
		}
		u := &qemuUser{uid: uid}
		c.users[id] = u
		return u, nil
	}
	return nil, fmt.Errorf("no free uid for QEMU in %s=%d-%d: every one is in use or has an account", EnvQEMUUIDs, c.first, c.first+c.n-1)
}

// probeVM is the confinement key of the accelerator probe: no VM has a negative ID.
const probeVM = -1

// probeUser is who the accelerator probe runs QEMU as: a uid of the VMs' range, so the
// probe proves what their QEMU can use. nil when the launcher is not root.
func (c *confinement) probeUser() (*qemu.User, error) {
	u, err := c.assign(probeVM)
	if err != nil || u == nil {
		return nil, err
	}
	c.release(probeVM, u) // the probe ends before any VM starts
	return &qemu.User{UID: u.uid, GID: u.uid}, nil
}

// release takes a VM's directories back for root once its QEMU has exited, so the next
// VM given the same uid cannot read them, and frees the uid.
func (c *confinement) release(id int64, u *qemuUser, dirs ...string) {
	if u == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users[id] != u {
		return // a later boot holds the VM now
	}
	for _, d := range dirs {
		_ = qemu.ChownTree(d, 0, 0) // a directory EPILOG removed is gone already
	}
	delete(c.users, id)
}

// searchable checks that QEMU, under an unprivileged uid, can walk down to dir: every
// ancestor must let others search it (x for others).
// Reachable tells whether QEMU, run as an unprivileged uid, can walk from
// / to dir: every directory above it must be searchable by others.
func Reachable(dir string) error { return searchable(dir, EnvWorkDir) }

func searchable(dir, setting string) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (mode %04o) is not searchable by others: QEMU runs as an unprivileged uid (%s) and could not reach %s; make it 0711 or choose another %s",
				p, st.Mode().Perm(), EnvQEMUUIDs, dir, setting)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
