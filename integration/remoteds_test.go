package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// remoteMinIO starts a MinIO for a test, as remote name holding
// slipway-ds-<name>-*, and returns the remote, a store on that server
// alone, and a function that stops it.
func remoteMinIO(t *testing.T, name string) (blob.Remote, *blob.Store, func()) {
	t.Helper()
	far, stop, err := testenv.StartMinIO(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	direct, err := blob.New(far.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	r := blob.Remote{Name: name, Endpoint: "http://" + far.Endpoint, Region: "us-east-1",
		Keys: blob.Keys{AccessKey: far.AccessKey, SecretKey: far.SecretKey}, Buckets: []string{"slipway-ds-" + name + "-*"}}
	return r, direct, stop
}

// TestRemoteDatastore runs the stack with every service reaching a second
// MinIO as the S3 remote "archive" (and a third, "flaky", that goes
// down): a datastore created on it from a template with ENDPOINT and
// CREDENTIALS; an upload imported into it is READY with its blob on the
// remote only; `image download` gives the same bytes back (temporary keys
// of the remote's STS); clones go from the default datastore to it and
// back; a datastore with images cannot be deleted; deleting the image
// removes its blob from the remote; templates naming an unknown remote or
// another endpoint are refused with what is wrong; an import into a remote
// that is down ends ERROR naming it, and the stack keeps importing.
func TestRemoteDatastore(t *testing.T) {
	archive, archiveStore, _ := remoteMinIO(t, "archive")
	flaky, _, stopFlaky := remoteMinIO(t, "flaky")
	s := newStack(t, stackOptions{remotes: []blob.Remote{archive, flaky}, converterMaxDeliver: 2})
	local, err := blob.New(s.s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	u := strings.ToLower(testenv.Unique())
	bucket := "slipway-ds-archive-" + u
	template := func(name, body string) string {
		path := filepath.Join(dir, name+".tpl")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// Refusals: nothing is created.
	for _, c := range []struct{ body, says string }{
		{fmt.Sprintf("NAME = x\nTYPE = IMAGE_DS\nDS_MAD = s3\nBUCKET = %q\nCREDENTIALS = \"nowhere\"\n", bucket),
			`CREDENTIALS "nowhere": no such S3 remote "nowhere" (remotes: archive, flaky)`},
		{fmt.Sprintf("NAME = x\nTYPE = IMAGE_DS\nDS_MAD = s3\nBUCKET = %q\nCREDENTIALS = \"archive\"\nENDPOINT = %q\n", bucket, flaky.Endpoint),
			fmt.Sprintf(`ENDPOINT %q is not S3 remote "archive"'s endpoint (%s)`, flaky.Endpoint, archive.Endpoint)},
		{fmt.Sprintf("NAME = x\nTYPE = IMAGE_DS\nDS_MAD = s3\nBUCKET = %q\n", bucket),
			fmt.Sprintf(`BUCKET %q lives on S3 remote "archive"`, bucket)},
	} {
		out, errOut, code := s.slipway("datastore", "create", template("bad", c.body))
		if code != 1 || !strings.Contains(errOut, c.says) {
			t.Errorf("datastore create of\n%s: exit %d, stdout %q, stderr %q; want a refusal saying %q", c.body, code, out, errOut, c.says)
		}
	}

	out := s.mustSlipway("datastore", "create", template("arc", fmt.Sprintf(
		"NAME = arc\nTYPE = IMAGE_DS\nDS_MAD = s3\nBUCKET = %q\nENDPOINT = %q\nCREDENTIALS = \"archive\"\nLIMIT_MB = 100\n", bucket, archive.Endpoint)))
	if strings.TrimSpace(out) != "ID: 100" {
		t.Fatalf("datastore create: %q", out)
	}

	// Import an upload into it.
	disk := filepath.Join(dir, "disk.raw")
	writeRandomRaw(t, disk, 6<<20)
	id, createOut, code := s.create("--name", "far", "--type", "DATABLOCK", "--datastore", "arc", "--path", disk)
	if code != 0 {
		t.Fatalf("import into the remote datastore: exit %d\n%s", code, createOut)
	}
	img := s.show(id)
	srcBucket, srcKey, err := blob.ParseURL(img.Source)
	if err != nil || srcBucket != bucket || img.State != "READY" {
		t.Fatalf("image %d: %s in %s, want READY in %s", id, img.State, img.Source, bucket)
	}
	if _, err := archiveStore.Stat(s.ctx, srcBucket, srcKey); err != nil {
		t.Errorf("the blob on the remote: %v", err)
	}
	if ok, err := local.Client().BucketExists(s.ctx, bucket); err != nil || ok {
		t.Errorf("bucket %s on the stack's own MinIO: %v %v", bucket, ok, err)
	}
	var ds schemas.CatalogDatastore
	if err := json.Unmarshal([]byte(s.mustSlipway("datastore", "show", "arc", "--json")), &ds); err != nil {
		t.Fatal(err)
	}
	if ds.Endpoint != archive.Endpoint || ds.Credentials != "archive" || ds.LimitMb != 100 || ds.UsedMb != 6 || ds.FreeMb != 94 {
		t.Errorf("datastore show arc: %+v, want on archive with 6 of 100 MB used", ds)
	}

	// Download: the same bytes.
	got := filepath.Join(dir, "got.raw")
	s.mustSlipway("image", "download", fmt.Sprint(id), "-o", got)
	if fileSHA256(t, got) != fileSHA256(t, disk) {
		t.Errorf("the download of image %d differs from the upload", id)
	}

	// Clone from the default datastore into arc, and from arc back.
	baseID, createOut, code := s.create("--name", "base", "--type", "DATABLOCK", "--path", disk)
	if code != 0 {
		t.Fatalf("import into default: %s", createOut)
	}
	base := s.show(baseID)
	toArc := mustID(t, s.mustSlipway("image", "clone", "base", "to-arc", "--datastore", "arc", "--timeout", "2m"))
	back := mustID(t, s.mustSlipway("image", "clone", "to-arc", "back", "--datastore", "default", "--timeout", "2m"))
	for _, c := range []struct {
		id     int64
		bucket string
		store  *blob.Store
	}{{toArc, bucket, archiveStore}, {back, blob.DefaultDatastoreBucket, local}} {
		clone := s.show(c.id)
		b, k, err := blob.ParseURL(clone.Source)
		if err != nil || clone.State != "READY" || b != c.bucket || clone.SHA256 != base.SHA256 {
			t.Fatalf("clone %d: %s at %s sha %s, want READY in %s with %s", c.id, clone.State, clone.Source, clone.SHA256, c.bucket, base.SHA256)
		}
		if sum, _, err := c.store.SHA256(s.ctx, b, k); err != nil || sum != base.SHA256 {
			t.Errorf("clone %d's blob: %s %v, want %s", c.id, sum, err, base.SHA256)
		}
	}

	// A datastore with images stays; deleting an image removes its blob
	// from the remote.
	if _, errOut, code := s.slipway("datastore", "delete", "arc"); code != 1 || !strings.Contains(errOut, "datastore 100 has 2 images: ") {
		t.Errorf("delete of arc with images: exit %d, %q", code, errOut)
	}
	for _, del := range []int64{id, toArc} {
		s.mustSlipway("image", "delete", fmt.Sprint(del))
	}
	if !testenv.Eventually(time.Minute, 200*time.Millisecond, func() bool {
		keys, err := archiveStore.List(s.ctx, bucket, "images/")
		return err == nil && len(keys) == 0
	}) {
		keys, _ := archiveStore.List(s.ctx, bucket, "images/")
		t.Fatalf("blobs left on the remote after the deletes: %v", keys)
	}
	s.mustSlipway("datastore", "delete", "arc")
	if ok, err := archiveStore.Client().BucketExists(s.ctx, bucket); err != nil || ok {
		t.Errorf("bucket %s after deleting its empty datastore: exists %v %v (the catalog made it: it goes)", bucket, ok, err)
	}

	// A remote that goes down: the import ends ERROR naming it.
	s.mustSlipway("datastore", "create", template("fl", fmt.Sprintf(
		"NAME = fl\nTYPE = IMAGE_DS\nDS_MAD = s3\nBUCKET = \"slipway-ds-flaky-%s\"\nCREDENTIALS = \"flaky\"\n", u)))
	stopFlaky()
	_, createOut, code = s.create("--name", "lost", "--type", "DATABLOCK", "--datastore", "fl", "--path", disk)
	if code == 0 || !strings.Contains(createOut, `S3 remote "flaky" (`+flaky.Endpoint+`) did not answer`) {
		t.Errorf("import into a remote that is down: exit %d, want ERROR naming the remote:\n%s", code, createOut)
	}
	// The stack keeps working.
	if _, createOut, code := s.create("--name", "after", "--type", "DATABLOCK", "--path", disk); code != 0 {
		t.Errorf("import after the remote went down: %s", createOut)
	}
}

// TestRemoteDatastoreWorkers runs the services that read and write an
// image's blob besides the catalog and the converter on images of a
// datastore on an S3 remote ("archive", a second MinIO): an OS disk whose
// busybox init writes a file is imported into it; crypto-luks encrypts it
// (reads the plain blob there, writes the LUKS copy there); the launcher
// boots the LUKS copy, persistent, to its token (fetching it from the
// remote) and, once the VM is terminated, the catalog's new digest is the
// blob's on the remote (the write-back crossed servers: staged on the
// stack's MinIO, copied to the remote); market-lxc publishes the plain
// image into an s3 marketplace on the stack's own MinIO (a copy across
// servers) with the image's bytes. One boot only (about a minute under
// TCG).
func TestRemoteDatastoreWorkers(t *testing.T) {
	deb := debianKernelPackage(t)
	archive, archiveStore, _ := remoteMinIO(t, "archive")
	s := newStack(t, stackOptions{remotes: []blob.Remote{archive}, containers: true, boot: true})
	local, err := blob.New(s.s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bucket := "slipway-ds-archive-" + strings.ToLower(testenv.Unique())
	tpl := filepath.Join(dir, "arc.tpl")
	writeFile(t, tpl, fmt.Appendf(nil, "NAME = arc\nTYPE = IMAGE_DS\nDS_MAD = s3\nBUCKET = %q\nCREDENTIALS = \"archive\"\n", bucket))
	s.mustSlipway("datastore", "create", tpl)
	// onRemote checks that image id is READY in arc, its blob on the
	// remote (and not on the stack's MinIO) with the catalog's digest.
	onRemote := func(id int64) schemas.Image {
		t.Helper()
		img := s.show(id)
		b, k, err := blob.ParseURL(img.Source)
		if err != nil || img.State != "READY" || img.Datastore != "arc" || b != bucket {
			t.Fatalf("image %d: %s in %q at %s, want READY in arc (%s)", id, img.State, img.Datastore, img.Source, bucket)
		}
		if sum, _, err := archiveStore.SHA256(s.ctx, b, k); err != nil || sum != img.SHA256 {
			t.Fatalf("image %d's blob on the remote: sha256 %s %v, the catalog says %s", id, sum, err, img.SHA256)
		}
		if ok, err := local.Client().BucketExists(s.ctx, b); err != nil || ok {
			t.Fatalf("bucket %s on the stack's own MinIO: %v %v", b, ok, err)
		}
		return img
	}

	kernelID := s.addKernel(t, "debian", deb)
	token := "REMOTE-" + randomHex(t, 6)
	disk := busyboxInitDisk(t, dir, "/bin/busybox echo "+token+" > /written\n/bin/busybox sync\n/bin/busybox echo \""+token+" end\"\n")
	plainID, out, code := s.create("--name", "far-os", "--type", "OS", "--datastore", "arc", "--path", disk)
	if code != 0 {
		t.Fatalf("import into arc: exit %d\n%s", code, out)
	}
	plain := onRemote(plainID)

	// crypto-luks: the encrypted copy goes to the source's datastore.
	luksID := mustID(s.t, s.mustSlipway("luks", "encrypt", fmt.Sprint(plainID), "--name", "far-luks"))
	if img := s.waitSettled(luksID, 3*time.Minute); img.State != "READY" {
		t.Fatalf("encryption of image %d: %s (%s)", plainID, img.State, img.Error)
	}
	luks := onRemote(luksID)
	if luks.Format != "luks" || luks.Attributes["LUKS_SECRET"] == "" {
		t.Fatalf("encrypted image: format %s, attributes %v", luks.Format, luks.Attributes)
	}
	s.mustSlipway("image", "persistent", fmt.Sprint(luksID))

	// The launcher: the guest mounts its root read-write and writes a
	// file, so the write-back changes the blob.
	vmTpl := filepath.Join(dir, "far-vm.tmpl")
	writeFile(t, vmTpl, fmt.Appendf(nil, "NAME = \"far-vm\"\nCPU = 1\nMEMORY = 256\nDISK = [ IMAGE_ID = %d ]\n"+
		"OS = [ KERNEL_DS = \"$FILE[IMAGE_ID=%d]\", ROOT = \"vda\", KERNEL_CMD = \"rw init=/sbin/init\" ]\n", luksID, kernelID))
	vm := s.instantiate(t, mustID(s.t, s.mustSlipway("template", "create", vmTpl)))
	s.waitConsole(t, vm, token+" end", 6*time.Minute)
	s.terminate(t, vm)
	s.waitImageState(luksID, "READY", time.Minute)
	after := onRemote(luksID)
	if after.SHA256 == luks.SHA256 || after.Format != "luks" {
		t.Errorf("after the VM: format %s, sha256 %s (before: %s), want a changed LUKS blob", after.Format, after.SHA256, luks.SHA256)
	}
	// The encrypted blob it replaced is gone from the remote.
	_, afterKey, _ := blob.ParseURL(after.Source)
	if keys, err := archiveStore.List(s.ctx, bucket, blob.ImagePrefix(luksID)); err != nil || len(keys) != 1 || keys[0] != afterKey {
		t.Errorf("image %d's blobs on the remote: %v %v, want only %s", luksID, keys, err, afterKey)
	}

	// market-lxc: publish the plain image into an s3 marketplace of the
	// stack's MinIO.
	if err := local.EnsureBucket(s.ctx, blob.DefaultMarketBucket); err != nil {
		t.Fatal(err)
	}
	mkt := filepath.Join(dir, "s3pub.tpl")
	writeFile(t, mkt, fmt.Appendf(nil, "NAME = \"s3pub\"\nMARKET_MAD = \"s3\"\nBUCKET = %q\nMONITORING = \"NO\"\n", blob.DefaultMarketBucket))
	s.mustSlipway("market", "create", mkt)
	out = s.mustSlipway("market", "app", "create", "far-os", "--market", "s3pub", "--name", "far-os")
	published := "apps/far-os/disk." + string(plain.Format)
	if !strings.Contains(out, "published to "+blob.URL(blob.DefaultMarketBucket, published)) {
		t.Errorf("market app create:\n%s", out)
	}
	if sum, _, err := local.SHA256(s.ctx, blob.DefaultMarketBucket, published); err != nil || sum != plain.SHA256 {
		t.Errorf("the published blob: sha256 %s %v, image %d's is %s", sum, err, plainID, plain.SHA256)
	}
}
