package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// A Docker engine for the compose test: the one already reachable, or,
// when none is and the test runs as root, a dockerd of Debian's docker.io
// started for the test with the vfs storage driver (it works anywhere,
// nested containers included), no bridge and no iptables (every container
// uses the host's network). Its data root is a cache kept across runs
// (images and build cache, keyed by content); its sockets and state live in
// a directory of the run, and it is stopped when the test ends.

// composeCacheEnv names the variable overriding the cache directory
// (default: <user cache dir>/slipway/compose-test).
const composeCacheEnv = "SLIPWAY_COMPOSE_TEST_CACHE"

// standInLabel carries the key (a hash of the inputs) of a stand-in image,
// so a later run reuses it when nothing it is made of changed.
const standInLabel = "org.slipway.test.key"

type engine struct {
	t testing.TB
	// env is the whole environment of docker commands: PATH, HOME,
	// DOCKER_CONFIG (a directory of the test, with the compose plugin) and
	// DOCKER_HOST when the engine is not the default one.
	env []string
	// cache keeps what survives the run: the daemon's data root (own
	// engines), the Debian root file system tarball.
	cache string
	// own is set when the test started dockerd; execRoot holds its
	// sockets, state and log.
	own      bool
	dockerd  *exec.Cmd
	exited   chan struct{}
	execRoot string
	log      string
}

// startEngine returns a reachable Docker engine with ./bin/docker-compose
// as its compose plugin, or skips the test saying why there is none.
func startEngine(t *testing.T, root string) *engine {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		testenv.Skip(t, "no docker CLI on PATH: make deps installs docker.io")
	}
	plugin := filepath.Join(root, "bin", "docker-compose")
	if _, err := os.Stat(plugin); err != nil {
		t.Fatalf("no compose plugin (%v): run make tools", err)
	}
	config := t.TempDir()
	if err := os.Mkdir(filepath.Join(config, "cli-plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(plugin, filepath.Join(config, "cli-plugins", "docker-compose")); err != nil {
		t.Fatal(err)
	}
	e := &engine{t: t, env: []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"DOCKER_CONFIG=" + config,
	}}
	cache := os.Getenv(composeCacheEnv)
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("no cache directory (%v): set %s", err, composeCacheEnv)
		}
		cache = filepath.Join(dir, "slipway", "compose-test")
	}
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	e.cache = cache
	lockCache(t, cache)

	// An engine that is already there: DOCKER_HOST, or the default socket.
	if host := os.Getenv("DOCKER_HOST"); host != "" || fileExists("/var/run/docker.sock") {
		probe := e.env
		if host != "" {
			probe = append(probe, "DOCKER_HOST="+host)
		}
		if v, err := engineVersion(probe, 10*time.Second); err == nil {
			e.env = probe
			t.Logf("using the Docker engine %s at %s", v, firstNonEmpty(host, "unix:///var/run/docker.sock"))
			return e
		}
	}
	if os.Geteuid() != 0 {
		testenv.Skip(t, "no Docker engine is reachable and the test is not root, so it cannot start dockerd")
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		testenv.Skip(t, "no Docker engine is reachable and dockerd is not installed: make deps installs docker.io")
	}
	e.startDockerd(dockerd)
	return e
}

func (e *engine) startDockerd(dockerd string) {
	t := e.t
	// Unix socket paths are short: the run's directory is under /tmp.
	execRoot, err := os.MkdirTemp("", "swd-")
	if err != nil {
		t.Fatal(err)
	}
	e.execRoot = execRoot
	e.reapOrphans()
	if err := os.WriteFile(filepath.Join(e.cache, "exec-root"), []byte(execRoot), 0o600); err != nil {
		t.Fatal(err)
	}
	e.log = filepath.Join(execRoot, "dockerd.log")
	logf, err := os.Create(e.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	sock := filepath.Join(execRoot, "docker.sock")
	cmd := exec.Command(dockerd,
		"--storage-driver", "vfs",
		"--iptables=false", "--bridge=none",
		"--data-root", filepath.Join(e.cache, "docker"),
		"--exec-root", filepath.Join(execRoot, "exec"),
		"--pidfile", filepath.Join(execRoot, "dockerd.pid"),
		"--host", "unix://"+sock,
	)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dockerd: %v", err)
	}
	e.own, e.dockerd, e.exited = true, cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(e.exited) }()
	t.Cleanup(e.stopDockerd)
	e.env = append(e.env, "DOCKER_HOST=unix://"+sock)
	deadline := time.Now().Add(90 * time.Second)
	for {
		v, err := engineVersion(e.env, 5*time.Second)
		if err == nil {
			t.Logf("started dockerd %s (vfs, data root %s)", v, filepath.Join(e.cache, "docker"))
			return
		}
		select {
		case <-e.exited:
			t.Fatalf("dockerd exited: %v\n%s", cmd.ProcessState, tail(e.log, 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd not answering after 90s: %v\n%s", err, tail(e.log, 40))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// reapOrphans ends what a run killed before its cleanup left of its
// engine: that run wrote its exec root into the cache, and this one holds
// the cache's lock, so a dockerd, containerd or shim still naming that
// root is an orphan. Left running, it keeps the data root busy and the
// new dockerd's containerd fails to start.
func (e *engine) reapOrphans() {
	t := e.t
	b, err := os.ReadFile(filepath.Join(e.cache, "exec-root"))
	old := strings.TrimSpace(string(b))
	if err != nil || old == "" || old == e.execRoot || !strings.HasPrefix(filepath.Base(old), "swd-") {
		return
	}
	if pids := processIDsMentioning(old); len(pids) > 0 {
		t.Logf("killing %d processes an earlier run's dockerd left (exec root %s)", len(pids), old)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		testenv.Eventually(30*time.Second, 200*time.Millisecond, func() bool { return len(processIDsMentioning(old)) == 0 })
	}
	for _, m := range append(mountsUnder(old), mountsUnder(filepath.Join(e.cache, "docker"))...) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	_ = os.RemoveAll(old)
}

// stopDockerd ends the daemon (it stops its containerd), then checks that
// nothing it started still runs.
func (e *engine) stopDockerd() {
	t := e.t
	_ = e.dockerd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(60 * time.Second):
		t.Errorf("dockerd did not stop within 60s of SIGTERM: killed\n%s", tail(e.log, 20))
		_ = syscall.Kill(-e.dockerd.Process.Pid, syscall.SIGKILL)
		<-e.exited
	}
	// containerd and its shims carry the exec root in their command lines.
	var left []string
	if !testenv.Eventually(30*time.Second, 200*time.Millisecond, func() bool {
		left = processesMentioning(e.execRoot)
		return len(left) == 0
	}) {
		t.Errorf("processes of the test's dockerd still run after it stopped: %s", strings.Join(left, "; "))
	}
	// dockerd leaves its default network namespace mounted in the exec
	// root when it stops.
	for _, m := range mountsUnder(e.execRoot) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
	if left := mountsUnder(filepath.Join(e.cache, "docker")); len(left) > 0 {
		t.Errorf("mounts left in the data root after dockerd stopped: %v", left)
	}
	if err := os.RemoveAll(e.execRoot); err != nil {
		t.Errorf("exec root: %v", err)
	}
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// docker runs the docker CLI with the engine's environment plus extra and
// returns its stdout; it fails the test on a non-zero exit.
func (e *engine) docker(ctx context.Context, extra []string, stdin io.Reader, args ...string) string {
	e.t.Helper()
	out, errOut, err := e.run(ctx, extra, stdin, args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, lastLines(out, 40), lastLines(errOut, 60))
	}
	return out
}

func (e *engine) run(ctx context.Context, extra []string, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(append([]string{}, e.env...), extra...)
	cmd.Stdin = stdin
	var o, eb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &eb
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	return o.String(), eb.String(), err
}

// imageKey is the stand-in key label of ref, "" when there is no such image.
func (e *engine) imageKey(ref string) string {
	out, _, err := e.run(context.Background(), nil, nil, "image", "inspect", "--format", `{{index .Config.Labels "`+standInLabel+`"}}`, ref)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

func (e *engine) imageID(ref string) string {
	return strings.TrimSpace(e.docker(context.Background(), nil, nil, "image", "inspect", "--format", "{{.Id}}", ref))
}

// buildStandIn builds ref from dockerfile and the context files (path in
// the context → a host file or directory), unless an image with the same
// key is there already. The classic builder is used, on the host's network.
func (e *engine) buildStandIn(ref, dockerfile string, key []string, files map[string]string) {
	e.t.Helper()
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%q\n", dockerfile, key)
	sum := hex.EncodeToString(h.Sum(nil))[:32]
	if e.imageKey(ref) == sum {
		e.t.Logf("stand-in %s: reused", ref)
		return
	}
	start := time.Now()
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := addBytes(tw, "Dockerfile", []byte(dockerfile), 0o644)
		for name, src := range files {
			if err == nil {
				err = addPath(tw, name, src)
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e.docker(ctx, []string{"DOCKER_BUILDKIT=0"}, pr, "build", "--network", "host", "--label", standInLabel+"="+sum, "-t", ref, "-")
	e.t.Logf("stand-in %s: built in %s", ref, time.Since(start).Round(time.Second))
}

// importStandIn imports the root file system tarball write makes as ref
// with the Dockerfile instructions changes, unless an image with the same
// key is there already.
func (e *engine) importStandIn(ref, key string, changes []string, write func(w io.Writer) error) {
	e.t.Helper()
	if e.imageKey(ref) == key {
		e.t.Logf("stand-in %s: reused", ref)
		return
	}
	start := time.Now()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw)) }()
	args := []string{"import", "--change", "LABEL " + standInLabel + "=" + key}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e.docker(ctx, nil, pr, append(args, "-", ref)...)
	e.t.Logf("stand-in %s: imported in %s", ref, time.Since(start).Round(time.Second))
}

// standIns makes local stand-ins for the upstream images docker-compose.yml
// and deploy/Dockerfile name, and returns the variables that select them.
//   - Debian: debootstrap --variant=minbase bookworm from the machine's apt
//     mirror, with the machine's apt sources (debian:bookworm-slim).
//   - static: /etc/passwd, /etc/group and /tmp, user 65532 (distroless
//     static:nonroot).
//   - Go: the Debian stand-in with this machine's Go toolchain and CA
//     certificates (golang:1.26-bookworm).
//   - NATS: ./bin/nats-server, with busybox's wget for the healthcheck.
//   - MinIO: ./bin/minio, with Debian's curl for the healthcheck.
func (e *engine) standIns(root string) []string {
	t := e.t
	t.Helper()
	bin := filepath.Join(root, "bin")
	for _, f := range []string{"nats-server", "minio"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			t.Fatalf("%v: run make tools", err)
		}
	}
	const (
		debian = "slipway-test/debian:bookworm"
		static = "slipway-test/static:nonroot"
		golang = "slipway-test/golang:bookworm"
		nats   = "slipway-test/nats:local"
		minio  = "slipway-test/minio:local"
	)

	// Debian.
	mirror, sources := aptSources(t)
	h := sha256.New()
	fmt.Fprintf(h, "debootstrap --variant=minbase bookworm %s %s\n", mirror, runtime.GOARCH)
	for _, s := range sources {
		fmt.Fprintf(h, "%s\n%s\n", s.name, s.body)
	}
	debKey := hex.EncodeToString(h.Sum(nil))[:32]
	if e.imageKey(debian) != debKey {
		rootfs := e.debootstrap(mirror, sources, debKey)
		e.importStandIn(debian, debKey, []string{`CMD ["bash"]`}, func(w io.Writer) error { return copyFile(w, rootfs) })
	} else {
		t.Logf("stand-in %s: reused", debian)
	}
	debID := e.imageID(debian)

	// static.
	staticTar := func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, d := range []struct {
			name string
			mode int64
		}{{"etc/", 0o755}, {"tmp/", 0o1777}, {"home/", 0o755}, {"home/nonroot/", 0o700}} {
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode, ModTime: time.Unix(0, 0)}
			if d.name == "home/nonroot/" {
				hdr.Uid, hdr.Gid = 65532, 65532
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
		if err := addBytes(tw, "etc/passwd", []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644); err != nil {
			return err
		}
		if err := addBytes(tw, "etc/group", []byte("root:x:0:\nnonroot:x:65532:\n"), 0o644); err != nil {
			return err
		}
		return tw.Close()
	}
	var st bytes.Buffer
	if err := staticTar(&st); err != nil {
		t.Fatal(err)
	}
	stSum := sha256.Sum256(st.Bytes())
	e.importStandIn(static, hex.EncodeToString(stSum[:])[:32], []string{"USER 65532:65532"}, func(w io.Writer) error {
		_, err := w.Write(st.Bytes())
		return err
	})

	// Go.
	goroot := goEnv(t, "GOROOT")
	gover := goEnv(t, "GOVERSION")
	ca := "/etc/ssl/certs/ca-certificates.crt"
	if !fileExists(ca) {
		t.Fatalf("%s is missing: make deps installs ca-certificates", ca)
	}
	// One import of the Debian root plus the toolchain: one layer, no
	// build context to send.
	goKey := sha256.Sum256(fmt.Appendf(nil, "%s\n%s\n%s\n%s\n", debKey, gover, goroot, fileSHA256(t, ca)))
	if e.imageKey(golang) != hex.EncodeToString(goKey[:])[:32] {
		rootfs := e.debootstrap(mirror, sources, debKey)
		e.importStandIn(golang, hex.EncodeToString(goKey[:])[:32], []string{
			"ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"ENV GOPATH=/go", "ENV GOTOOLCHAIN=local", "WORKDIR /go", `CMD ["bash"]`,
		}, func(w io.Writer) error {
			tw := tar.NewWriter(w)
			if err := copyTar(tw, rootfs); err != nil {
				return err
			}
			if err := addPath(tw, "usr/local/go", goroot); err != nil {
				return err
			}
			if err := addPath(tw, "etc/ssl/certs/ca-certificates.crt", ca); err != nil {
				return err
			}
			return tw.Close()
		})
	} else {
		t.Logf("stand-in %s: reused", golang)
	}

	// NATS.
	busybox := "/bin/busybox"
	if !fileExists(busybox) {
		t.Fatalf("%s is missing: make deps installs busybox-static", busybox)
	}
	natsBin := filepath.Join(bin, "nats-server")
	e.buildStandIn(nats, `FROM `+debian+`
ENTRYPOINT ["nats-server"]
COPY root/ /
`, []string{debID, fileSHA256(t, natsBin), fileSHA256(t, busybox)}, map[string]string{
		"root/usr/local/bin/nats-server": natsBin,
		"root/usr/local/bin/busybox":     busybox,
		"root/usr/local/bin/wget":        "symlink:busybox",
	})

	// MinIO.
	minioBin := filepath.Join(bin, "minio")
	e.buildStandIn(minio, `FROM `+debian+`
ENTRYPOINT ["minio"]
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
COPY root/ /
`, []string{debID, fileSHA256(t, minioBin)}, map[string]string{
		"root/usr/local/bin/minio": minioBin,
	})

	return []string{
		"GO_IMAGE=" + golang, "DEBIAN_IMAGE=" + debian, "STATIC_IMAGE=" + static,
		"NATS_IMAGE=" + nats, "MINIO_IMAGE=" + minio,
	}
}

type aptSource struct{ name, body string }

// aptSources reads the machine's apt configuration: the first URI serving
// Debian bookworm (for debootstrap) and the source files themselves (the
// stand-in gets the same, like debian:bookworm-slim gets Debian's).
func aptSources(t testing.TB) (mirror string, sources []aptSource) {
	t.Helper()
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	if fileExists("/etc/apt/sources.list") {
		files = append([]string{"/etc/apt/sources.list"}, files...)
	}
	for _, f := range files {
		if !strings.HasSuffix(f, ".list") && !strings.HasSuffix(f, ".sources") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		keep := false
		if strings.HasSuffix(f, ".sources") {
			for _, stanza := range strings.Split(string(b), "\n\n") {
				var uris, suites []string
				for _, l := range strings.Split(stanza, "\n") {
					if v, ok := strings.CutPrefix(l, "URIs:"); ok {
						uris = strings.Fields(v)
					}
					if v, ok := strings.CutPrefix(l, "Suites:"); ok {
						suites = strings.Fields(v)
					}
				}
				for _, s := range suites {
					if strings.HasPrefix(s, "bookworm") && len(uris) > 0 {
						keep = true
						if s == "bookworm" && mirror == "" {
							mirror = uris[0]
						}
					}
				}
			}
		} else {
			for _, l := range strings.Split(string(b), "\n") {
				fields := strings.Fields(l)
				if len(fields) < 3 || fields[0] != "deb" {
					continue
				}
				if strings.HasPrefix(fields[1], "[") { // deb [options] uri suite
					for len(fields) > 1 && !strings.HasSuffix(fields[1], "]") {
						fields = append(fields[:1], fields[2:]...)
					}
					fields = append(fields[:1], fields[2:]...)
				}
				if len(fields) >= 3 && strings.HasPrefix(fields[2], "bookworm") {
					keep = true
					if fields[2] == "bookworm" && mirror == "" {
						mirror = fields[1]
					}
				}
			}
		}
		if keep {
			sources = append(sources, aptSource{name: filepath.Base(f), body: string(b)})
		}
	}
	if mirror == "" {
		t.Fatal("the apt configuration has no source for Debian bookworm: the Debian stand-in needs one")
	}
	return mirror, sources
}

// debootstrap makes (or reuses) the Debian root file system tarball of key
// in the cache and returns its path.
func (e *engine) debootstrap(mirror string, sources []aptSource, key string) string {
	t := e.t
	t.Helper()
	out := filepath.Join(e.cache, "debian-bookworm-"+key+".tar")
	if fileExists(out) {
		return out
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		testenv.Skip(t, "debootstrap is not installed (make deps installs it): no Debian stand-in")
	}
	old, _ := filepath.Glob(filepath.Join(e.cache, "debian-bookworm-*.tar"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	dir := filepath.Join(e.cache, "debian-rootfs")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "bookworm", dir, mirror)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, lastLines(string(b), 30))
	}
	// What a slim image leaves out: downloaded packages and package lists.
	// The sources are the machine's, like the debian image's are Debian's.
	for _, pattern := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "etc/apt/sources.list"} {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, m := range matches {
			if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() {
				_ = os.Remove(m)
			}
		}
	}
	for _, s := range sources {
		if err := os.WriteFile(filepath.Join(dir, "etc/apt/sources.list.d", s.name), []byte(s.body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := out + ".tmp"
	tarCmd := exec.Command("tar", "--numeric-owner", "-C", dir, "-cf", tmp, ".")
	tarCmd.Env = []string{"PATH=/usr/bin:/bin"}
	if b, err := tarCmd.CombinedOutput(); err != nil {
		t.Fatalf("tar of the Debian root: %v\n%s", err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap bookworm (minbase): %s", time.Since(start).Round(time.Second))
	return out
}

// lockCache holds an exclusive lock on the cache for the test: two runs
// must not share one daemon data root.
func lockCache(t testing.TB, cache string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(cache, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Minute)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("lock %s (another compose test holds it?): %v", cache, err)
		}
		time.Sleep(time.Second)
	}
	t.Cleanup(func() { f.Close() })
}

func engineVersion(env []string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// copyTar writes every entry of the tarball at path to tw.
func copyTar(tw *tar.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// addPath adds src (a file, a directory tree, or "symlink:TARGET") to tw
// as name, with its modes, owned by root.
func addPath(tw *tar.Writer, name, src string) error {
	if target, ok := strings.CutPrefix(src, "symlink:"); ok {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: time.Unix(0, 0)})
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(filepath.Join(name, rel))
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		return copyFile(tw, p)
	})
}

// copyFile writes the content of the file at path to w.
func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func addBytes(tw *tar.Writer, name string, body []byte, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}

func goEnv(t testing.TB, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// processesMentioning lists the processes whose command line contains s.
func processesMentioning(s string) []string {
	var out []string
	for _, p := range cmdlinesMentioning(s) {
		out = append(out, fmt.Sprintf("%d: %s", p.pid, p.cmdline))
	}
	return out
}

// processIDsMentioning lists the IDs of the processes whose command line
// contains s.
func processIDsMentioning(s string) []int {
	var out []int
	for _, p := range cmdlinesMentioning(s) {
		out = append(out, p.pid)
	}
	return out
}

type cmdline struct {
	pid     int
	cmdline string
}

func cmdlinesMentioning(s string) []cmdline {
	var out []cmdline
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		out = append(out, cmdline{pid, strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")})
	}
	return out
}

// processesInContainers lists the processes whose cgroup names one of ids.
func processesInContainers(ids []string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, id := range ids {
			if id != "" && bytes.Contains(b, []byte(id)) {
				cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
				out = append(out, filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " "))
				break
			}
		}
	}
	return out
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
