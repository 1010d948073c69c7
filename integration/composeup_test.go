package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/tlsca"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/keywrap/keywraptest"
)

// composeProject is the project name of the test's stack, so that it never
// touches a "slipway" project of the same engine.
const composeProject = "slipway-test"

// composeServices are the long-running services of docker-compose.yml.
var composeServices = []string{"nats", "minio", "catalog", "converter", "builder", "market-dockerhub", "market-lxc",
	"kernel-registry", "crypto-luks", "launcher", "dead-letter", "console"}

// TestComposeStack runs docker-compose.yml on a real Docker engine, the
// steps of the README's "On a container engine" section: build every
// image, start the stack and wait until every service is healthy, then,
// with the CLI container, import a disk file, import a docker:// image from
// a registry on loopback, add a kernel and boot the image in the launcher's
// container until its token shows on the console; `down -v` leaves no
// container, volume or process behind. Upstream images are replaced by local
// stand-ins (see engine.standIns): this machine reaches no image registry.
func TestComposeStack(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	deb := debianKernelPackage(t)
	began := time.Now()
	e := startEngine(t, root)
	images := e.standIns(root)
	t.Logf("engine and stand-ins ready: %s", time.Since(began).Round(time.Second))

	ports := freePorts(t, 6)
	kek := keywraptest.Key(t)
	c := &composeStack{t: t, e: e, root: root, s3Port: ports[2], s3Secret: randomHex(t, 24)}
	c.env = append(append([]string{}, images...),
		"COMPOSE_PROJECT_NAME="+composeProject,
		fmt.Sprintf("SLIPWAY_NATS_PORT=%d", ports[0]),
		fmt.Sprintf("SLIPWAY_NATS_MONITOR_PORT=%d", ports[1]),
		fmt.Sprintf("SLIPWAY_S3_PORT=%d", ports[2]),
		fmt.Sprintf("SLIPWAY_S3_CONSOLE_PORT=%d", ports[3]),
		fmt.Sprintf("SLIPWAY_NATS_WS_PORT=%d", ports[4]),
		fmt.Sprintf("SLIPWAY_CONSOLE_PORT=%d", ports[5]),
		"SLIPWAY_S3_SECRET_KEY="+c.s3Secret, // no default: compose refuses to start without one
		"SLIPWAY_LUKS_KEK="+base64.StdEncoding.EncodeToString(kek),
		"SLIPWAY_MARKET_MONITORING=off",
		// The registry of step 4 listens on loopback, which outbound
		// fetches may reach only when opened.
		"SLIPWAY_FETCH_ALLOW=127.0.0.0/8",
	)
	// The build's go stage downloads modules the way this machine does.
	for _, k := range []string{"GOPROXY", "GOFLAGS", "GONOSUMDB", "GONOSUMCHECK", "GOSUMDB", "GOPRIVATE", "GOINSECURE"} {
		if v := goEnv(t, k); v != "" {
			c.env = append(c.env, k+"="+v)
		}
	}
	c.files = []string{"-f", filepath.Join(root, "docker-compose.yml")}
	if gid, ok := kvmGroup(); ok {
		c.files = append(c.files, "-f", filepath.Join(root, "deploy", "compose.kvm.yml"))
		c.env = append(c.env, fmt.Sprintf("KVM_GID=%d", gid))
		t.Logf("launcher: /dev/kvm passed in (group %d)", gid)
	} else {
		t.Log("launcher: no group-accessible /dev/kvm, QEMU runs on TCG")
	}

	// A run killed before its cleanup (the engine's data root is cached)
	// leaves the project's volumes: a catalog that remembers its images.
	c.clearLeftovers()

	// 1. Build every image (one at a time: with the classic builder, and
	// no buildx, parallel builds would each compile the go stage).
	step := time.Now()
	c.compose(30*time.Minute, []string{"COMPOSE_PARALLEL_LIMIT=1"}, "--profile", "cli", "build")
	t.Logf("compose build: %s", time.Since(step).Round(time.Second))
	// Every build leaves the images it replaced untagged, and with vfs each
	// is a full copy: the cached data root grew past 50 GB in a day of runs.
	// Only layers still under a tagged image serve the next build's cache.
	c.e.docker(context.Background(), nil, nil, "image", "prune", "--force")

	// 2. Start the stack and wait until every service is healthy.
	step = time.Now()
	t.Cleanup(c.down)
	if _, errOut, err := c.run(10*time.Minute, nil, "up", "-d", "--wait", "--wait-timeout", "480"); err != nil {
		t.Fatalf("compose up: %v\n%s\n%s", err, lastLines(errOut, 30), c.diagnose())
	}
	c.checkHealthy()
	t.Logf("compose up (all healthy): %s", time.Since(step).Round(time.Second))

	work := t.TempDir()
	if err := os.Chmod(work, 0o755); err != nil { // the CLI runs as uid 65532
		t.Fatal(err)
	}

	// 2b. Authentication and TLS: the servers present certificates of the
	// stack's CA; NATS refuses anonymous clients; a user's credentials
	// work until the user is deleted, then the server refuses them.
	step = time.Now()
	c.fetchCA()
	c.checkTLSAndAuth(ports[0])
	creds := t.TempDir()
	if err := os.Chmod(creds, 0o777); err != nil { // the CLI (uid 65532) writes alice's file
		t.Fatal(err)
	}
	c.mustCLI([]string{creds + ":/creds"}, "user", "create", "alice", "--out", "/creds/alice.creds")
	if out := c.mustCLI([]string{creds + ":/creds:ro"}, "--creds", "/creds/alice.creds", "user", "show", "alice"); !strings.Contains(out, "USER alice INFORMATION") {
		t.Errorf("alice shows herself:\n%s", out)
	}
	c.mustCLI(nil, "user", "delete", "alice")
	if out, errOut, code := c.cli([]string{creds + ":/creds:ro"}, "--creds", "/creds/alice.creds", "user", "show", "alice"); code == 0 || !strings.Contains(errOut, "refused") {
		t.Errorf("deleted alice's credentials: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("TLS, authentication and revocation: %s", time.Since(step).Round(time.Second))

	// 3. Import a disk file.
	step = time.Now()
	raw := filepath.Join(work, "disk.raw")
	mkfs := exec.Command("mkfs.ext4", "-q", "-F", "-L", "compose", raw, "16M")
	if out, err := mkfs.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(work, "disk.qcow2"))
	for _, f := range []string{"disk.raw", "disk.qcow2"} {
		if err := os.Chmod(filepath.Join(work, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	diskID := mustID(c.t, c.mustCLI([]string{work + ":/work:ro"}, "image", "create", "--wait", "--name", "compose-disk", "--path", "/work/disk.qcow2"))
	disk := c.show(diskID)
	if disk.State != "READY" || disk.Size != 16<<20 {
		t.Fatalf("imported disk: %+v", disk)
	}
	stored := filepath.Join(t.TempDir(), "stored")
	c.download(disk.Source, stored)
	testenv.Exec(t, "qemu-img", "compare", "-f", "raw", "-F", string(disk.Format), raw, stored)
	t.Logf("disk import: %s", time.Since(step).Round(time.Second))

	// 4. Import a docker:// image from a registry on loopback (the
	// containers share the host's network).
	step = time.Now()
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	token := "COMPOSE-" + randomHex(t, 6)
	push(t, host+"/test/bootme:1.0", []v1.Layer{layer(t, busyboxRoot(t))}, v1.Config{
		Entrypoint: []string{"/bin/busybox", "sh", "-c"}, Cmd: []string{"echo " + token + " host=$(hostname)"},
		Env: []string{"PATH=/bin"},
	})
	url := "docker://" + host + "/test/bootme?tag=1.0&size=64&filesystem=ext4&format=qcow2"
	imageID := mustID(c.t, c.mustCLI(nil, "image", "create", "--wait", "--name", "compose-bootme", "--path", url))
	if img := c.show(imageID); img.State != "READY" || img.Format != "qcow2" {
		t.Fatalf("docker import: %+v", img)
	}
	t.Logf("docker:// import: %s", time.Since(step).Round(time.Second))

	// 5. Add a kernel and boot the image in the launcher's container.
	step = time.Now()
	kernelID := mustID(c.t, c.mustCLI([]string{filepath.Dir(deb) + ":/kernel:ro"}, "kernel", "add", "--name", "debian", "/kernel/"+filepath.Base(deb)))
	var kernel struct {
		Arch   string `json:"arch"`
		Initrd *int64 `json:"initrd"`
	}
	c.mustJSON(&kernel, nil, "kernel", "show", fmt.Sprint(kernelID), "--json")
	if kernel.Arch != "x86_64" || kernel.Initrd == nil {
		t.Fatalf("kernel %d: %+v, want x86_64 with an initrd", kernelID, kernel)
	}
	for _, id := range []int64{kernelID, *kernel.Initrd} {
		if img := c.waitSettled(id, 3*time.Minute); img.State != "READY" {
			t.Fatalf("kernel-registry image %d is %s (%s)", id, img.State, img.Error)
		}
	}
	tmpl := filepath.Join(work, "vm.tmpl")
	writeFile(t, tmpl, fmt.Appendf(nil, `NAME = "compose-vm"
CPU = 1
MEMORY = 256
DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", ROOT = "vda" ]
CONTEXT = [ HOSTNAME = "compose-vm" ]
`, imageID, kernelID))
	if err := os.Chmod(tmpl, 0o644); err != nil {
		t.Fatal(err)
	}
	tmplID := mustID(c.t, c.mustCLI([]string{work + ":/work:ro"}, "template", "create", "/work/vm.tmpl"))
	vm := mustID(c.t, c.mustCLI(nil, "template", "instantiate", fmt.Sprint(tmplID)))
	console := c.waitConsole(vm, token, 8*time.Minute)
	if !strings.Contains(console, "SLIPWAY-READY") || !strings.Contains(console, "host=compose-vm") {
		t.Errorf("console lacks the ready line or the context hostname:\n%s", console)
	}
	t.Logf("kernel add and boot to the token: %s", time.Since(step).Round(time.Second))
	c.mustCLI(nil, "vm", "terminate", fmt.Sprint(vm))
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var rec vmRecord
		c.mustJSON(&rec, nil, "vm", "show", fmt.Sprint(vm), "--json")
		if rec.State == "DONE" {
			break
		}
		if rec.State == "FAILED" || time.Now().After(deadline) {
			t.Fatalf("VM %d did not end DONE: %s (%s)", vm, rec.State, rec.Error)
		}
		time.Sleep(2 * time.Second)
	}
	if img := c.waitImageState(imageID, "READY", time.Minute); img.RVMs != 0 {
		t.Errorf("after terminate the image has %d VMs", img.RVMs)
	}

	// 6. Take it down: nothing is left.
	step = time.Now()
	c.down()
	t.Logf("compose down -v: %s", time.Since(step).Round(time.Second))
	t.Logf("whole test: %s", time.Since(began).Round(time.Second))
}

// composeStack is the test's compose project on an engine.
type composeStack struct {
	t      *testing.T
	e      *engine
	root   string
	env    []string
	files  []string
	s3Port int
	// s3Secret is MinIO's root password, made for this run.
	s3Secret string
	// ca is the stack's CA certificate, copied out of the minio container.
	ca string
	// seen are the IDs of every container the project had, checked for
	// leftover processes after down.
	seen []string
	done bool
}

func (c *composeStack) run(timeout time.Duration, extra []string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"compose", "--project-directory", c.root}, c.files...)
	return c.e.run(ctx, append(append([]string{}, c.env...), extra...), nil, append(full, args...)...)
}

func (c *composeStack) compose(timeout time.Duration, extra []string, args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(timeout, extra, args...)
	if err != nil {
		c.t.Fatalf("docker compose %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, lastLines(out, 40), lastLines(errOut, 60))
	}
	return out
}

// cli runs the slipway CLI in its container (docker compose run --rm
// slipway …) with the bind mounts given ("host:container[:ro]").
func (c *composeStack) cli(mounts []string, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	full := []string{"run", "--rm", "--no-deps", "-T"}
	for _, m := range mounts {
		full = append(full, "-v", m)
	}
	full = append(append(full, "slipway"), args...)
	out, errOut, err := c.run(10*time.Minute, nil, full...)
	code = 0
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			c.t.Fatalf("docker compose run slipway %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		code = exit.ExitCode()
	}
	return out, errOut, code
}

func (c *composeStack) mustCLI(mounts []string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.cli(mounts, args...)
	if code != 0 {
		c.t.Fatalf("slipway %s: exit %d\nstdout:\n%s\nstderr:\n%s\n%s", strings.Join(args, " "), code, out, lastLines(errOut, 40), c.diagnose())
	}
	return out
}

func (c *composeStack) mustJSON(v any, mounts []string, args ...string) {
	c.t.Helper()
	out := c.mustCLI(mounts, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("slipway %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *composeStack) show(id int64) schemas.Image {
	c.t.Helper()
	var img schemas.Image
	c.mustJSON(&img, nil, "image", "show", fmt.Sprint(id), "--json")
	return img
}

// waitSettled returns the image once it left LOCKED, or as it is after
// timeout.
func (c *composeStack) waitSettled(id int64, timeout time.Duration) (img schemas.Image) {
	c.t.Helper()
	testenv.Eventually(timeout, 2*time.Second, func() bool { img = c.show(id); return img.State != "LOCKED" })
	return img
}

func (c *composeStack) waitImageState(id int64, state string, timeout time.Duration) (img schemas.Image) {
	c.t.Helper()
	if !testenv.Eventually(timeout, 2*time.Second, func() bool { img = c.show(id); return string(img.State) == state }) {
		c.t.Fatalf("image %d is %s, want %s", id, img.State, state)
	}
	return img
}

// waitConsole polls the VM's console until it holds want, failing early
// when the VM fails.
func (c *composeStack) waitConsole(vm int64, want string, timeout time.Duration) string {
	c.t.Helper()
	var console string
	var rec vmRecord
	testenv.Eventually(timeout, 3*time.Second, func() bool {
		console = c.mustCLI(nil, "vm", "console", fmt.Sprint(vm))
		if strings.Contains(console, want) {
			return true
		}
		c.mustJSON(&rec, nil, "vm", "show", fmt.Sprint(vm), "--json")
		return rec.State == "FAILED"
	})
	if !strings.Contains(console, want) {
		c.t.Fatalf("VM %d is %s (%s) and its console has no %q:\n%s\n%s", vm, rec.State, rec.Error, want, console, c.diagnose())
	}
	return console
}

// fetchCA copies the stack's CA certificate out of the minio container.
func (c *composeStack) fetchCA() {
	c.t.Helper()
	c.ca = filepath.Join(c.t.TempDir(), "ca.crt")
	c.compose(time.Minute, nil, "cp", "minio:/certs/CAs/ca.crt", c.ca)
}

// checkTLSAndAuth connects to the stack's NATS and MinIO from the host:
// without the CA the certificates are refused; with it, NATS still refuses
// a client without credentials.
func (c *composeStack) checkTLSAndAuth(natsPort int) {
	c.t.Helper()
	url := fmt.Sprintf("tls://127.0.0.1:%d", natsPort)
	natsRefuses := func(what, want string, refused func(error) bool, opts ...nats.Option) {
		c.t.Helper()
		nc, err := nats.Connect(url, append(opts, nats.NoReconnect())...)
		if nc != nil {
			nc.Close()
		}
		if err == nil || !refused(err) {
			c.t.Errorf("NATS %s: %v, want %s", what, err, want)
		}
	}
	natsRefuses("without the CA", "an untrusted certificate", tlsca.IsUntrusted)
	natsRefuses("with the CA, without credentials", "an authorization violation",
		func(err error) bool { return errors.Is(err, nats.ErrAuthorization) }, nats.RootCAs(c.ca))
	plain, err := blob.New(c.s3Config(""))
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := plain.Client().BucketExists(context.Background(), "slipway-default"); err == nil || !tlsca.IsUntrusted(err) {
		c.t.Errorf("MinIO without the CA: %v, want an untrusted certificate", err)
	}
}

// s3Config reaches the stack's MinIO from the host with its root keys,
// trusting caFile ("": the system's roots only).
func (c *composeStack) s3Config(caFile string) blob.Config {
	return blob.Config{Endpoint: fmt.Sprintf("https://127.0.0.1:%d", c.s3Port), AccessKey: "slipway", SecretKey: c.s3Secret, CAFile: caFile}
}

// download reads an s3:// object of the stack's MinIO into path.
func (c *composeStack) download(url, path string) {
	c.t.Helper()
	store, err := blob.New(c.s3Config(c.ca))
	if err != nil {
		c.t.Fatal(err)
	}
	testenv.Download(c.t, context.Background(), store, url, path)
}

type composePS struct {
	ID      string `json:"ID"`
	Service string `json:"Service"`
	State   string `json:"State"`
	Health  string `json:"Health"`
}

// ps lists the project's containers (all of them with all).
func (c *composeStack) ps(all bool) []composePS {
	c.t.Helper()
	args := []string{"ps", "--format", "json", "--no-trunc"}
	if all {
		args = append(args, "--all")
	}
	out := strings.TrimSpace(c.compose(time.Minute, nil, args...))
	var list []composePS
	if strings.HasPrefix(out, "[") {
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			c.t.Fatalf("compose ps: %v\n%s", err, out)
		}
		return list
	}
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		var p composePS
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			c.t.Fatalf("compose ps: %v\n%s", err, l)
		}
		list = append(list, p)
	}
	return list
}

// checkHealthy asserts every long-running service runs and is healthy.
func (c *composeStack) checkHealthy() {
	c.t.Helper()
	got := map[string]composePS{}
	for _, p := range c.ps(true) {
		got[p.Service] = p
		c.seen = append(c.seen, p.ID)
	}
	for _, svc := range composeServices {
		p, ok := got[svc]
		if !ok {
			c.t.Errorf("service %s has no container", svc)
			continue
		}
		if p.State != "running" || p.Health != "healthy" {
			c.t.Errorf("service %s is %s/%s, want running/healthy", svc, p.State, p.Health)
		}
	}
	if c.t.Failed() {
		c.t.Fatal(c.diagnose())
	}
}

// diagnose is the state and recent logs of the project, for failures.
func (c *composeStack) diagnose() string {
	ps, _, _ := c.run(time.Minute, nil, "ps", "--all")
	logs, _, _ := c.run(time.Minute, nil, "logs", "--no-color", "--tail", "15")
	return "compose ps:\n" + ps + "\ncompose logs (last lines of each):\n" + logs
}

// clearLeftovers removes what a killed run of the test left of the
// project (containers, volumes), so the stack starts from nothing, and
// says so when there was something.
func (c *composeStack) clearLeftovers() {
	label := "label=com.docker.compose.project=" + composeProject
	containers := strings.Fields(c.e.docker(context.Background(), nil, nil, "ps", "--all", "--quiet", "--filter", label))
	volumes := strings.Fields(c.e.docker(context.Background(), nil, nil, "volume", "ls", "--quiet", "--filter", label))
	if len(containers)+len(volumes) == 0 {
		return
	}
	c.t.Logf("removing what an earlier run left: %d containers, volumes %s", len(containers), strings.Join(volumes, " "))
	c.compose(5*time.Minute, nil, "--profile", "cli", "down", "--volumes", "--remove-orphans", "--timeout", "10")
	if left := strings.TrimSpace(c.e.docker(context.Background(), nil, nil, "volume", "ls", "--quiet", "--filter", label)); left != "" {
		c.t.Fatalf("volumes of an earlier run survive down -v: %s", left)
	}
}

// down runs `docker compose down -v` and checks nothing of the project is
// left: no container, no volume, no process in a container it had.
func (c *composeStack) down() {
	if c.done {
		return
	}
	c.done = true
	t := c.t
	for _, p := range c.ps(true) {
		c.seen = append(c.seen, p.ID)
	}
	c.compose(5*time.Minute, nil, "--profile", "cli", "down", "--volumes", "--remove-orphans", "--timeout", "30")
	label := "label=com.docker.compose.project=" + composeProject
	if out := strings.TrimSpace(c.e.docker(context.Background(), nil, nil, "ps", "--all", "--quiet", "--filter", label)); out != "" {
		t.Errorf("containers left after down: %s", out)
	}
	if out := strings.TrimSpace(c.e.docker(context.Background(), nil, nil, "volume", "ls", "--quiet", "--filter", label)); out != "" {
		t.Errorf("volumes left after down -v: %s", out)
	}
	var left []string
	if !testenv.Eventually(30*time.Second, 200*time.Millisecond, func() bool {
		left = processesInContainers(slices.Compact(c.seen))
		return len(left) == 0
	}) {
		t.Errorf("processes of the project's containers still run after down: %s", strings.Join(left, "; "))
	}
}

// kvmGroup is the group owning /dev/kvm when members of it may open it.
func kvmGroup() (int, bool) {
	fi, err := os.Stat("/dev/kvm")
	if err != nil || fi.Mode().Perm()&0o060 != 0o060 {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Gid), true
}

// freePorts returns n TCP ports free on loopback now.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
