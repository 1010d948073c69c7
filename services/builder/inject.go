package builder

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder/guestinit"
	"github.com/slipway/slipway/services/builder/tree"
)

// UnknownDistro is recorded for an image without an os-release file (a
// scratch or distroless image) when the command names no distro: the
// build goes on, since the guest init needs nothing from a distribution.
const UnknownDistro = "unknown"

// slipwayDir is guestinit's directory, in tree form.
var slipwayDir = tree.Clean(path.Dir(guestinit.InitPath))

// inject writes Slipway's guest init and the process's config into the
// flattened root and records them in its tree, owned by root, dated mtime
// (Unix seconds). Whatever the image had at /.slipway is replaced.
func inject(root string, t *tree.Tree, initBinary string, cfg guestinit.Config, mtime int64) error {
	for _, e := range t.Entries() {
		if e.Type == tree.Hardlink && strings.HasPrefix(e.Link+"/", slipwayDir+"/") && !strings.HasPrefix(e.Path+"/", slipwayDir+"/") {
			return fmt.Errorf("the image's /%s is replaced by Slipway's guest init, but %q is a hard link into it (%q)", slipwayDir, e.Path, e.Link)
		}
	}
	dir := filepath.Join(root, slipwayDir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	t.Remove(slipwayDir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	initSize, err := copyFile(initBinary, filepath.Join(root, tree.Clean(guestinit.InitPath)), 0o755)
	if err != nil {
		return fmt.Errorf("guest init: %w", err)
	}
	conf, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, tree.Clean(guestinit.ConfigPath)), conf, 0o644); err != nil {
		return err
	}
	t.Put(&tree.Entry{Path: slipwayDir, Type: tree.Dir, Mode: 0o755, ModTime: mtime})
	t.Put(&tree.Entry{Path: tree.Clean(guestinit.InitPath), Type: tree.Regular, Mode: 0o755, Size: initSize, ModTime: mtime})
	t.Put(&tree.Entry{Path: tree.Clean(guestinit.ConfigPath), Type: tree.Regular, Mode: 0o644, Size: int64(len(conf)), ModTime: mtime})
	return nil
}

// containerConfig is the part of the image config the guest init runs,
// and the date of what is injected: the image's own, so builds are
// reproducible.
func containerConfig(cfg *v1.ConfigFile) (guestinit.Config, int64) {
	c := cfg.Config
	mtime := int64(0)
	if !cfg.Created.IsZero() {
		mtime = cfg.Created.Unix()
	}
	return guestinit.Config{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}, mtime
}

// rootfsPath is the PATH a rootfs's init starts with: a tarball has no
// container config to give one.
const rootfsPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// rootfsConfig is what the guest init runs in a rootfs: the distro's own
// /sbin/init, as the machine's init (PID 1, see guestinit.Config.Init).
// The kernel command line can still name another program.
func rootfsConfig() guestinit.Config {
	return guestinit.Config{Entrypoint: []string{"/sbin/init"}, Env: []string{rootfsPath}, Init: true}
}

func copyFile(src, dst string, mode os.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(dst, mode) // the umask may have taken bits away
	}
	return n, err
}

// distro is the command's distro, else the ID of the image's os-release,
// else UnknownDistro.
func (s *Service) distro(root string, cmd schemas.BuilderBuild) string {
	if cmd.Distro != "" {
		return cmd.Distro
	}
	if id := readOSReleaseID(root); id != "" {
		return id
	}
	s.log.Warn("the image has no os-release and the command names no distro; recording "+UnknownDistro,
		"image_id", cmd.ImageID, "reference", cmd.Reference, "url", fetch.Redact(cmd.URL))
	return UnknownDistro
}

// maxOSRelease bounds how much of an os-release file is read.
const maxOSRelease = 64 << 10

var distroRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// readOSReleaseID reads ID= from /etc/os-release, else /usr/lib/os-release,
// resolving symlinks inside root only; "" when there is none.
func readOSReleaseID(root string) string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		full, err := guestinit.ResolveInRoot(root, p)
		if err != nil {
			continue
		}
		data, err := readRegular(full, maxOSRelease)
		if err != nil {
			continue
		}
		if id := osReleaseID(data); id != "" {
			return id
		}
	}
	return ""
}

// readRegular reads at most limit bytes of path if it is a regular file:
// a FIFO or a symlink planted by the image is not followed or waited on.
func readRegular(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// osReleaseID returns the ID of an os-release file, lower-cased, or ""
// when it has none that fits a distro name.
func osReleaseID(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "ID=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		v = strings.ToLower(strings.TrimSpace(v))
		if distroRE.MatchString(v) {
			return v
		}
		return ""
	}
	return ""
}
