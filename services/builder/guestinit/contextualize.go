package guestinit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ContextLabel is the ISO9660 volume label of OpenNebula's context disk.
const ContextLabel = "CONTEXT"

// context gathers the contextualization variables: the CONTEXT disk's
// context.sh, then the kernel command line's over it.
func (in *Init) context(c *Cmdline) map[string]string {
	ctx := map[string]string{}
	if in.ContextDisk {
		disk, err := in.contextFromDisk()
		if err != nil {
			in.logf("context disk: %v", err)
		}
		for k, v := range disk {
			ctx[k] = v
		}
	}
	for k, v := range c.Context {
		ctx[k] = v
	}
	if len(ctx) > 0 {
		keys := make([]string, 0, len(ctx))
		for k := range ctx {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		in.logf("context: %s", strings.Join(keys, " "))
	}
	return ctx
}

// contextFromDisk scans the block devices for one whose ISO9660 label is
// CONTEXT and reads its context.sh; nil when there is none.
func (in *Init) contextFromDisk() (map[string]string, error) {
	entries, err := os.ReadDir(in.path("/sys/class/block"))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		dev := in.path("/dev/" + e.Name())
		f, err := os.Open(dev)
		if err != nil {
			continue // no medium in a CD drive, or no node: not ours
		}
		label, err := ISOLabel(f)
		if err != nil || label != ContextLabel {
			f.Close()
			continue
		}
		data, err := in.readContextSh(dev, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dev, err)
		}
		ctx, err := ParseContext(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dev, err)
		}
		in.logf("context disk %s", "/dev/"+e.Name())
		return ctx, nil
	}
	return nil, nil
}

// readContextSh mounts the disk read-only and reads context.sh; when the
// kernel cannot mount iso9660 it reads the file from the disk directly.
func (in *Init) readContextSh(dev string, f *os.File) ([]byte, error) {
	if in.Mount != nil {
		mp := in.path("/run/slipway/context")
		if err := os.MkdirAll(mp, 0o700); err == nil {
			err = in.Mount(dev, mp, "iso9660", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
			if err == nil {
				data, rerr := os.ReadFile(filepath.Join(mp, "context.sh"))
				if in.Unmount != nil {
					_ = in.Unmount(mp, 0)
				}
				if rerr == nil {
					return data, nil
				}
			}
		}
	}
	return ReadISORootFile(f, "context.sh", maxContextBytes)
}

// setHostname applies SET_HOSTNAME, else HOSTNAME from the context, else
// the config's hostname, and returns the one set.
func (in *Init) setHostname(cfg *Config, ctx map[string]string) string {
	name := cfg.Hostname
	for _, k := range []string{"HOSTNAME", "SET_HOSTNAME"} {
		if v := strings.TrimSpace(ctx[k]); v != "" {
			name = v
		}
	}
	if name == "" || in.Sethostname == nil {
		return name
	}
	if err := in.Sethostname(name); err != nil {
		in.logf("hostname %q: %v", name, err)
	}
	return name
}

func (in *Init) network(ctx map[string]string) {
	if in.ConfigureNetwork == nil {
		return
	}
	nc, err := NetConfigFromContext(ctx)
	if err != nil {
		in.logf("network: %v", err)
		return
	}
	if err := in.ConfigureNetwork(in.Root, nc); err != nil {
		in.logf("network: %v", err)
		return
	}
	if nc == nil {
		return
	}
	in.logf("network: %s", nc.Address)
	if rc := nc.ResolvConf(); rc != "" {
		if err := in.writeFile("/etc/resolv.conf", rc, 0o644); err != nil {
			in.logf("network: %v", err)
		}
	}
}

// writeFile writes a file of the image, following its symlinks inside Root.
func (in *Init) writeFile(p, content string, mode os.FileMode) error {
	host, err := ResolveInRoot(in.Root, p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		return err
	}
	return os.WriteFile(host, []byte(content), mode)
}

// sshKeys installs SSH_PUBLIC_KEY for the container's user when it has a
// home, else for root.
func (in *Init) sshKeys(ctx map[string]string, u *User) {
	keys := ctx["SSH_PUBLIC_KEY"]
	if strings.TrimSpace(keys) == "" {
		return
	}
	home, uid, gid := u.Home, u.UID, u.GID
	if home == "" || home == "/" {
		home, uid, gid = "/root", 0, 0
	}
	if err := AddAuthorizedKeys(in.Root, home, uid, gid, keys); err != nil {
		in.logf("%v", err)
		return
	}
	in.logf("ssh keys: %s/.ssh/authorized_keys", home)
}

// startScript runs START_SCRIPT_BASE64 or START_SCRIPT with /bin/sh as root,
// the context variables in its environment, and waits for it.
func (in *Init) startScript(ctx map[string]string) {
	script, err := StartScript(ctx)
	if err != nil {
		in.logf("%v", err)
		return
	}
	if script == "" {
		return
	}
	if err := checkExecutable(in.Root, "/bin/sh", "/bin/sh"); err != nil {
		in.logf("START_SCRIPT cannot run: the image has no /bin/sh (%v)", err)
		return
	}
	cmd := exec.Command("/bin/sh", "-c", script)
	env := []string{"PATH=" + DefaultPath, "HOME=/root"}
	for k, v := range ctx {
		env = append(env, k+"="+v)
	}
	cmd.Env, cmd.Dir = env, "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, in.Stdout, in.Stderr
	if in.Root != "/" {
		cmd.SysProcAttr = &unix.SysProcAttr{Chroot: in.Root}
	}
	if err := cmd.Run(); err != nil {
		in.logf("START_SCRIPT: %v", err)
		return
	}
	in.logf("START_SCRIPT: done")
}

// StartScript returns the start script of the context: START_SCRIPT_BASE64
// decoded, else START_SCRIPT.
func StartScript(ctx map[string]string) (string, error) {
	if b := strings.TrimSpace(ctx["START_SCRIPT_BASE64"]); b != "" {
		data, err := base64.StdEncoding.DecodeString(b)
		if err != nil {
			return "", errors.New("START_SCRIPT_BASE64 is not valid base64")
		}
		return string(data), nil
	}
	return ctx["START_SCRIPT"], nil
}
