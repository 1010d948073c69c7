package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder"
	"github.com/slipway/slipway/services/builder/fsimage"
	"github.com/slipway/slipway/services/builder/tree"
	"github.com/slipway/slipway/services/catalog"
	"github.com/slipway/slipway/services/converter"
	marketdockerhub "github.com/slipway/slipway/services/market-dockerhub"
	marketlxc "github.com/slipway/slipway/services/market-lxc"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
	"github.com/slipway/slipway/tools/slipway/cli"
)

// stack is one whole Slipway: a real in-process nats-server, a real MinIO
// process, the catalog and the converter, each on its own bus connection.
type stack struct {
	t       testing.TB
	natsURL string
	// adminCreds is oneadmin's credentials file: the CLI and the nats CLI
	// use it, as they use slipway up's.
	adminCreds string
	s3         testenv.S3
	store      *blob.Store
	nc         *nats.Conn
	ctx        context.Context
	services   sync.WaitGroup

	converterCancel     context.CancelFunc
	converterMaxDeliver int
	// guard is what the converter, market-dockerhub and the builder may
	// fetch from.
	guard *netguard.Policy
}

type stackOptions struct {
	// noConverter leaves the converter out so a test can run it as a process.
	noConverter    bool
	maxVirtualSize int64
	// containers adds market-dockerhub and the builder, for docker:// imports.
	containers bool
	// guestInit is the slipway-init binary the builder injects.
	guestInit string
	// boot adds kernel-registry, crypto-luks and the launcher.
	boot bool
	// turnKeyKeyring verifies TurnKey's .hash documents for market-lxc
	// (nil: none, TurnKey listings fail).
	turnKeyKeyring *pgpverify.Keyring
	// remotes are the S3 remotes every service's store reaches besides
	// the stack's MinIO (datastores on another S3 server).
	remotes []blob.Remote
	// converterMaxDeliver bounds the converter's attempts at a job (0:
	// the worker's default), for a test whose job fails until it ends.
	converterMaxDeliver int
	// noFetchAllow runs the fetching services without SLIPWAY_FETCH_ALLOW:
	// loopback, where the tests' servers and registries listen, refused.
	// Otherwise they run with 127.0.0.0/8 and ::1 open.
	noFetchAllow bool
}

// importBuckets is what the stack's operator lists in
// SLIPWAY_IMPORT_BUCKETS: s3:// imports may read these besides the upload
// bucket.
var importBuckets = []string{"user-disks"}

func newStack(t testing.TB, opts stackOptions) *stack {
	t.Helper()
	natsURL, _ := testenv.NATS(t)
	s3 := testenv.MinIO(t)
	storeCfg := s3.BlobConfig()
	storeCfg.Remotes = opts.remotes
	store, err := blob.New(storeCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, natsURL: natsURL, s3: s3, store: store, ctx: ctx, converterMaxDeliver: opts.converterMaxDeliver,
		adminCreds: testenv.CredentialsFile(t, natsURL, identity.User(acl.AdminUser, true))}
	if !opts.noFetchAllow {
		s.guard = netguard.MustParse("127.0.0.0/8,::1/128")
	}
	t.Cleanup(func() {
		cancel()
		s.services.Wait()
	})

	s.nc = testenv.Dial(t, natsURL)

	cat := s.connect("catalog")
	if err := cat.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	s.run("catalog", func(ctx context.Context) error {
		return catalog.New(cat, store, catalog.Config{VerifyDigest: true, ImportBuckets: importBuckets}).Run(ctx)
	})
	if !opts.noConverter {
		s.startConverter(opts.maxVirtualSize)
	}
	if opts.containers {
		s.startContainerServices(opts.guestInit, opts.turnKeyKeyring)
	}
	if opts.boot {
		s.startBootServices()
	}
	s.waitForService("catalog")
	return s
}

func (s *stack) connect(service string) *bus.Bus {
	s.t.Helper()
	return testenv.Connect(s.t, s.ctx, s.natsURL, service)
}

func (s *stack) run(name string, fn func(ctx context.Context) error) {
	s.services.Add(1)
	go func() {
		defer s.services.Done()
		if err := fn(s.ctx); err != nil && s.ctx.Err() == nil {
			s.t.Errorf("%s stopped: %v", name, err)
		}
	}()
}

func (s *stack) startConverter(maxVirtualSize int64) {
	b := s.connect("converter")
	ctx, cancel := context.WithCancel(s.ctx)
	s.converterCancel = cancel
	loc := blob.DefaultLocations()
	loc.ImportBuckets = importBuckets
	cfg := converter.Config{Config: worker.Config{TempDir: s.t.TempDir(), MaxDeliver: s.converterMaxDeliver}, MaxVirtualSize: maxVirtualSize, Locations: loc}
	cfg.Fetch.Guard = s.guard
	s.services.Add(1)
	go func() {
		defer s.services.Done()
		if err := converter.New(b, s.store, cfg).Run(ctx); err != nil && ctx.Err() == nil {
			s.t.Errorf("converter stopped: %v", err)
		}
	}()
	s.waitForService("converter")
}

// startContainerServices runs the marketplace services (never listing
// Docker Hub or the public marketplaces: this machine must not reach them)
// and the builder. keyring is market-lxc's TurnKey keyring, if any.
func (s *stack) startContainerServices(guestInit string, keyring *pgpverify.Keyring) {
	hub := s.connect("market-dockerhub")
	s.run("market-dockerhub", func(ctx context.Context) error {
		return marketdockerhub.New(hub, marketdockerhub.Config{HubOffline: true, HubAPI: "http://127.0.0.1:1", Settings: market.Settings{Guard: s.guard}}).Run(ctx)
	})
	// With the stack's store market-lxc publishes into private
	// marketplaces, as its binary does with its S3 user.
	lxcCfg := marketlxc.Config{Offline: true, TurnKeyKeyring: keyring, Settings: market.Settings{Guard: s.guard},
		Store: s.store, Locations: blob.DefaultLocations()}
	lxc := s.connect("market-lxc")
	s.run("market-lxc", func(ctx context.Context) error { return marketlxc.New(lxc, lxcCfg).Run(ctx) })
	b := s.connect("builder")
	cfg := builder.Config{Config: worker.Config{TempDir: s.t.TempDir()}, GuestInit: guestInit}
	cfg.Registry.Guard = s.guard
	s.run("builder", func(ctx context.Context) error {
		return builder.New(b, s.store, cfg).Run(ctx)
	})
	s.waitForService("market-dockerhub")
	s.waitForService("market-lxc")
	s.waitForService("builder")
}

// waitForService waits until the service answers NATS micro's PING.
func (s *stack) waitForService(name string) { testenv.WaitForService(s.t, s.natsURL, name) }

// slipway runs the CLI in-process against this stack, the way a user would.
func (s *stack) slipway(args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{
		"--nats-url", s.natsURL,
		"--creds", s.adminCreds,
		"--s3-endpoint", s.s3.Endpoint,
		"--s3-access-key", s.s3.AccessKey,
		"--s3-secret-key", s.s3.SecretKey,
	}, args...)
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
	defer cancel()
	code = cli.Execute(ctx, full, &out, &errb)
	return out.String(), errb.String(), code
}

// mustSlipway runs the CLI and fails the test unless it exits 0.
func (s *stack) mustSlipway(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.slipway(args...)
	if code != 0 {
		s.t.Fatalf("slipway %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// create runs `slipway image create ... --wait` and returns the image ID and
// the exit code (0 READY, non-zero ERROR).
func (s *stack) create(args ...string) (id int64, out string, code int) {
	s.t.Helper()
	stdout, stderr, code := s.slipway(append([]string{"image", "create", "--wait"}, args...)...)
	out = stdout + stderr
	if _, err := fmt.Sscanf(idLine(stdout), "ID: %d", &id); err != nil {
		s.t.Fatalf("no ID line in create output (exit %d):\n%s", code, out)
	}
	return id, out, code
}

// mustID reads the "ID: N" line of a command's output.
func mustID(t testing.TB, out string) int64 {
	t.Helper()
	var id int64
	if _, err := fmt.Sscanf(idLine(out), "ID: %d", &id); err != nil {
		t.Fatalf("no ID line in:\n%s", out)
	}
	return id
}

func idLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ID: ") {
			return l
		}
	}
	return ""
}

// show returns the catalog's record of an image through `slipway image show --json`.
func (s *stack) show(id int64) schemas.Image {
	s.t.Helper()
	out := s.mustSlipway("image", "show", fmt.Sprint(id), "--json")
	var img schemas.Image
	if err := json.Unmarshal([]byte(out), &img); err != nil {
		s.t.Fatalf("image show --json: %v\n%s", err, out)
	}
	return img
}

// waitState polls the catalog until the image leaves LOCKED.
func (s *stack) waitSettled(id int64, timeout time.Duration) (img schemas.Image) {
	s.t.Helper()
	if !testenv.Eventually(timeout, 200*time.Millisecond, func() bool { img = s.show(id); return img.State != "LOCKED" }) {
		s.t.Fatalf("image %d still LOCKED after %s", id, timeout)
	}
	return img
}

// objectSHA256 reads an s3:// object back with minio-go and hashes it.
func (s *stack) objectSHA256(url string) (string, int64) {
	s.t.Helper()
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		s.t.Fatal(err)
	}
	obj, err := s.store.Client().GetObject(s.ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	defer obj.Close()
	h := sha256.New()
	n, err := io.Copy(h, obj)
	if err != nil {
		s.t.Fatalf("read %s: %v", url, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// objects lists every object in every bucket as s3:// URLs.
func (s *stack) objects() []string {
	s.t.Helper()
	buckets, err := s.store.Client().ListBuckets(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	var urls []string
	for _, b := range buckets {
		for o := range s.store.Client().ListObjects(s.ctx, b.Name, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				s.t.Fatal(o.Err)
			}
			urls = append(urls, blob.URL(b.Name, o.Key))
		}
	}
	return urls
}

// incompleteUploads counts multipart uploads left open in every bucket.
func (s *stack) incompleteUploads() int {
	s.t.Helper()
	buckets, err := s.store.Client().ListBuckets(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	n := 0
	for _, b := range buckets {
		for u := range s.store.Client().ListIncompleteUploads(s.ctx, b.Name, "", true) {
			if u.Err == nil {
				n++
			}
		}
	}
	return n
}

// qemuImg runs the real qemu-img and fails the test on error.
func qemuImg(t testing.TB, args ...string) string {
	t.Helper()
	return testenv.Exec(t, "qemu-img", args...)
}

// writeRandomRaw makes a raw disk of size bytes whose first half is
// pseudo-random data, seeded by path, so conversions have real work to do.
func writeRandomRaw(t *testing.T, path string, size int64) {
	t.Helper()
	testenv.WriteDisk(t, path, size, io.LimitReader(rand.NewChaCha8(sha256.Sum256([]byte(path))), size/2))
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	sum := testenv.FileSHA256(t, path)
	return hex.EncodeToString(sum[:])
}

// download copies an s3:// object to a local file.
func (s *stack) download(url, path string) {
	s.t.Helper()
	testenv.Download(s.t, s.ctx, s.store, url, path)
}

// extDisk downloads the qcow2 disk at url, converts it to raw, checks its
// ext filesystem (e2fsck -n) and returns the raw file with the tree it
// holds.
func (s *stack) extDisk(t *testing.T, url string) (raw string, files *tree.Tree) {
	t.Helper()
	local := filepath.Join(t.TempDir(), "disk.qcow2")
	s.download(url, local)
	raw = local + ".raw"
	qemuImg(t, "convert", "-f", "qcow2", "-O", "raw", local, raw)
	testenv.Exec(t, "e2fsck", "-fn", raw)
	files, err := fsimage.ReadExt(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, files
}
