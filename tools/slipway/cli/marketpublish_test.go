package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/tools/slipway/up"
)

// TestMarketPublishPrivate runs the real stack (catalog, converter,
// market-lxc with its own MinIO user, real MinIO): an image is published
// into an http marketplace (PUBLIC_DIR under the public root, served by a
// plain file server at BASE_URL) and into an s3 one (the market bucket),
// listed by a second marketplace record pointing at the same place,
// imported back and compared with the original (sha256 of the published
// blob, qemu-img compare of the imported disk); monitor numbers are
// recorded; app delete removes the files and objects; a user without use
// of the image is refused; a PUBLIC_DIR outside the root and a bucket that
// is not a market bucket are refused.
func TestMarketPublishPrivate(t *testing.T) {
	// slipway up serves the public root (--market-http-addr), and its
	// services may fetch from there.
	flags, s3, st := stackWith(t, func(c *up.Config) { c.MarketHTTPAddr = "127.0.0.1:0" })
	root := st.PublicRoot()
	served := st.MarketURL
	store, err := blob.New(s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	must(t, slipway(t, flags, "image", "create", "--name", "src", "--path", qcow2(t), "--wait", "--timeout", "2m"), "image create")
	src := list(t, flags)[0]
	srcFile := download(t, store, src.Source)

	// http: publish, then a second record reads BASE_URL and imports back.
	pubDir := filepath.Join(root, "pub")
	must(t, slipway(t, flags, "market", "create", writeFile(t, "pub.tpl", "NAME = \"pub\"\nMARKET_MAD = \"http\"\nBASE_URL = \""+
		served+"/pub/\"\nPUBLIC_DIR = \""+pubDir+"\"\nTOTAL_MB = \"100\"\nMONITORING = \"NO\"\n")), "market create http")
	r := must(t, slipway(t, flags, "market", "app", "create", "src", "--market", "pub", "--name", "disk-1",
		"--version", "3.20", "--description", "a test disk", "--vm-template", writeFile(t, "vm.tpl", "CPU = 2\nMEMORY = 256\nDISK = [ IMAGE_ID = 0 ]\n")),
		"market app create (http)")
	blobURL := served + "/pub/apps/disk-1/disk.qcow2"
	if !regexp.MustCompile(`^app \d+ "disk-1" in marketplace 100 "pub": image 0 published to `+regexp.QuoteMeta(blobURL)).MatchString(r.stdout) ||
		!strings.Contains(r.stdout, src.SHA256) || strings.Contains(r.stdout, "does not show it") {
		t.Errorf("app create:\n%s", r.stdout)
	}
	if sum := fileSHA256(t, filepath.Join(pubDir, "apps", "disk-1", "disk.qcow2")); sum != src.SHA256 {
		t.Errorf("published file sha256 %s, image %s", sum, src.SHA256)
	}
	mustShow(t, flags, []string{"market", "show", "pub"}, "PUBLIC_DIR     : "+pubDir, "TOTAL_MB       : 100",
		"USED_MB        : "+strconv.FormatInt(usedMiB(t, pubDir), 10), "FREE_MB        : "+strconv.FormatInt(100-usedMiB(t, pubDir), 10))
	must(t, slipway(t, flags, "market", "create", writeFile(t, "reader.tpl", "NAME = \"reader\"\nMARKET_MAD = \"http\"\nBASE_URL = \""+
		served+"/pub/\"\nMONITORING = \"NO\"\n")), "market create http reader")
	r = must(t, slipway(t, flags, "market", "refresh", "reader"), "refresh reader")
	if r.stdout != "marketplace 101 \"reader\": 1 apps (1 new, 0 gone)\n" {
		t.Errorf("refresh reader: %q", r.stdout)
	}
	mustShow(t, flags, []string{"market", "app", "show", "reader/disk-1"}, "VERSION        : 3.20", "SOURCE         : "+blobURL,
		"sha256:"+src.SHA256)
	backID := importedBack(t, flags, store, "reader/disk-1", "back-http", srcFile)
	// The published VM template comes back named after the import, its
	// disk the imported image.
	r = mustShow(t, flags, []string{"market", "app", "show", "reader/disk-1"}, `NAME = "back-http"`, `MEMORY = "256"`,
		`IMAGE_ID = "`+strconv.Itoa(backID)+`"`)
	if strings.Contains(r.stdout, `IMAGE_ID = "0"`) {
		t.Errorf("the imported template kept the publisher's disk:\n%s", r.stdout)
	}

	// Every byte is checked: a blob changed after publishing ends ERROR.
	tamper(t, filepath.Join(pubDir, "apps", "disk-1", "disk.qcow2"))
	r = slipway(t, flags, "market", "app", "import", "reader/disk-1", "--name", "tampered", "--wait", "--timeout", "2m")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "sha256") {
		t.Errorf("import of a tampered blob: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The public root is served read-only, without the publishers' state.
	for _, p := range []string{"/pub/.slipway/lock", "/pub/", "/pub/apps/"} {
		if resp, err := http.Get(served + p); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %v %v, want 404", p, resp.Status, err)
		} else {
			resp.Body.Close()
		}
	}

	// A taken name is refused; the same image again by the same publisher
	// is the same app (what a redelivered app-create finds).
	must(t, slipway(t, flags, "image", "create", "--name", "other", "--type", "DATABLOCK", "--size", "1", "--wait", "--timeout", "2m"), "image create other")
	r = slipway(t, flags, "market", "app", "create", "other", "--market", "pub", "--name", "disk-1")
	if r.code != 1 || !strings.Contains(r.stderr, "app already published") {
		t.Errorf("another image under a taken name: exit %d, %s", r.code, r.stderr)
	}
	if r := slipway(t, flags, "market", "app", "create", "src", "--market", "pub", "--name", "disk-1", "--version", "3.20"); r.code != 0 {
		b, _ := os.ReadFile(filepath.Join(pubDir, "index.json"))
		t.Fatalf("the same app again: %s\n%s", r.stderr, b)
	}

	// A datastore blob that is not what the catalog recorded (rot, or an
	// edit behind the catalog's back) is refused at once, not retried.
	var other listed
	for _, img := range list(t, flags) {
		if img.Name == "other" {
			other = img
		}
	}
	rewriteBlob(t, store, other.Source)
	r = slipway(t, flags, "market", "app", "create", "other", "--market", "pub", "--name", "rotten", "--timeout", "1m")
	if r.code != 1 || !strings.Contains(r.stderr, "SHA-256 mismatch") || !strings.Contains(r.stderr, "image "+strconv.Itoa(other.ID)) {
		t.Errorf("publishing a blob that differs from its record: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(pubDir, "apps", "rotten")); !os.IsNotExist(err) {
		t.Errorf("a refused publish left apps/rotten: %v", err)
	}

	// A user without use of the image is refused by the service.
	creds := filepath.Join(t.TempDir(), "alice.creds")
	must(t, slipway(t, flags, "user", "create", "alice", "--out", creds))
	r = slipway(t, withCreds(flags, creds), "market", "app", "create", strconv.Itoa(src.ID), "--market", "pub", "--name", "stolen")
	if r.code != 1 || !strings.Contains(r.stderr, "alice") || !strings.Contains(r.stderr, "image 0") {
		t.Errorf("alice publishing oneadmin's image: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(pubDir, "apps", "stolen")); !os.IsNotExist(err) {
		t.Errorf("a refused publish left apps/stolen: %v", err)
	}

	// PUBLIC_DIR must lie below the public root.
	r = slipway(t, flags, "market", "create", writeFile(t, "evil.tpl", "NAME = \"evil\"\nMARKET_MAD = \"http\"\nBASE_URL = \""+
		served+"/\"\nPUBLIC_DIR = \""+root+"/../elsewhere\"\nMONITORING = \"NO\"\n"))
	if r.code != 1 || !strings.Contains(r.stderr, "PUBLIC_DIR") {
		t.Errorf("PUBLIC_DIR outside the root: exit %d, %s", r.code, r.stderr)
	}

	// Only its publisher or an administrator deletes an app.
	r = slipway(t, withCreds(flags, creds), "market", "app", "delete", "pub/disk-1")
	if r.code != 1 || !strings.Contains(r.stderr, `published by "oneadmin"`) {
		t.Errorf("alice deleting oneadmin's app: exit %d, %s", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "market", "app", "delete", "pub/disk-1"), "app delete (http)")
	if _, err := os.Stat(filepath.Join(pubDir, "apps", "disk-1")); !os.IsNotExist(err) {
		t.Errorf("app delete left apps/disk-1: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(pubDir, "index.json")); err != nil || strings.Contains(string(b), "disk-1") {
		t.Errorf("index after delete: %s %v", b, err)
	}

	// s3: publish by a server-side copy, read by a second record.
	must(t, slipway(t, flags, "market", "create", writeFile(t, "s3.tpl", "NAME = \"s3pub\"\nMARKET_MAD = \"s3\"\nBUCKET = \"slipway-market\"\nMONITORING = \"NO\"\n")), "market create s3")
	r = must(t, slipway(t, flags, "market", "app", "create", "src", "--market", "s3pub", "--name", "disk-2"), "market app create (s3)")
	if !strings.Contains(r.stdout, "published to s3://slipway-market/apps/disk-2/disk.qcow2") {
		t.Errorf("app create s3:\n%s", r.stdout)
	}
	if sum, n, err := store.SHA256(context.Background(), "slipway-market", "apps/disk-2/disk.qcow2"); err != nil || sum != src.SHA256 {
		t.Errorf("published object: sha256 %s (%d bytes), image %s: %v", sum, n, src.SHA256, err)
	}
	mustShow(t, flags, []string{"market", "show", "s3pub"}, "BUCKET         : slipway-market", "TOTAL_MB       : 1048576",
		"USED_MB        : "+strconv.FormatInt(objectsMiB(t, store, "slipway-market"), 10))
	must(t, slipway(t, flags, "market", "create", writeFile(t, "s3r.tpl", "NAME = \"s3reader\"\nMARKET_MAD = \"s3\"\nBUCKET = \"slipway-market\"\nMONITORING = \"NO\"\n")), "market create s3 reader")
	r = must(t, slipway(t, flags, "market", "refresh", "s3reader"), "refresh s3reader")
	if !strings.Contains(r.stdout, "1 apps (1 new, 0 gone)") {
		t.Errorf("refresh s3reader: %q", r.stdout)
	}
	importedBack(t, flags, store, "s3reader/disk-2", "back-s3", srcFile)

	// A user publishes an image of theirs, and deletes it.
	alice := withCreds(flags, creds)
	must(t, slipway(t, alice, "image", "create", "--name", "mine", "--type", "DATABLOCK", "--size", "1", "--wait", "--timeout", "2m"), "alice's image")
	must(t, slipway(t, alice, "market", "app", "create", "mine", "--market", "s3pub", "--name", "alices"), "alice publishes")
	mustShow(t, alice, []string{"market", "app", "show", "s3pub/alices"}, "PUBLISHER      : alice")
	must(t, slipway(t, alice, "market", "app", "delete", "s3pub/alices"), "alice deletes hers")

	r = slipway(t, flags, "market", "create", writeFile(t, "s3bad.tpl", "NAME = \"s3bad\"\nMARKET_MAD = \"s3\"\nBUCKET = \"slipway-default\"\nMONITORING = \"NO\"\n"))
	if r.code != 1 || !strings.Contains(r.stderr, "SLIPWAY_MARKET_BUCKETS") {
		t.Errorf("a datastore bucket as BUCKET: exit %d, %s", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "market", "app", "delete", "s3pub/disk-2"), "app delete (s3)")
	if left, err := store.List(context.Background(), "slipway-market", "apps/"); err != nil || len(left) != 0 {
		t.Errorf("objects left after app delete: %v %v", left, err)
	}
}

// tamper flips the last byte of a file.
func tamper(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rewriteBlob replaces the object at url with as many other bytes.
func rewriteBlob(t *testing.T, store *blob.Store, url string) {
	t.Helper()
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc, size, err := store.Get(context.Background(), bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, err := store.Put(context.Background(), bucket, key, bytes.NewReader(bytes.Repeat([]byte{0x5a}, int(size))), size); err != nil {
		t.Fatal(err)
	}
}

// importedBack imports app as name, waits for READY, compares the
// imported disk with the original file (qemu-img compare) and returns the
// image's ID.
func importedBack(t *testing.T, flags []string, store *blob.Store, app, name, original string) int {
	t.Helper()
	r := must(t, slipway(t, flags, "market", "app", "import", app, "--name", name, "--wait", "--timeout", "2m"), "app import "+app)
	if !strings.Contains(r.stdout, ": READY") {
		t.Fatalf("import %s:\n%s", app, r.stdout)
	}
	var img listed
	for _, i := range list(t, flags) {
		if i.Name == name {
			img = i
		}
	}
	back := download(t, store, img.Source)
	if out, err := exec.Command("qemu-img", "compare", original, back).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare %s (imported from %s): %v: %s", name, app, err, out)
	}
	return img.ID
}

// download copies an s3:// object to a file.
func download(t *testing.T, store *blob.Store, url string) string {
	t.Helper()
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := store.Get(context.Background(), bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	p := filepath.Join(t.TempDir(), filepath.Base(key))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// usedMiB is what the files below dir take, rounded up to MiB.
func usedMiB(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		n += fi.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return (n + 1<<20 - 1) >> 20
}

// objectsMiB is what the objects of bucket take, rounded up to MiB.
func objectsMiB(t *testing.T, store *blob.Store, bucket string) int64 {
	t.Helper()
	var n int64
	for o := range store.Client().ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n += o.Size
	}
	return (n + 1<<20 - 1) >> 20
}
