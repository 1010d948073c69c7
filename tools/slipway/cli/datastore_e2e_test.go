package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

// TestEndToEndDatastores runs the real stack (its own MinIO, one user per
// service): oneadmin creates a 10 MB
// IMAGE_DS from a template file; an image uploaded into it goes through
// the real converter into its bucket; list prints OpenNebula's columns
// with the capacity; an image past the limit is refused with the numbers;
// the datastore cannot be deleted while it holds the image, nor can the
// configured ones; an empty FILE_DS is deleted.
func TestEndToEndDatastores(t *testing.T) {
	// A provisioned stack: every service acts with its own MinIO user, so
	// the catalog creating the bucket and the converter writing into it
	// go through the slipway-ds-* grants of their policies.
	flags, _ := provisionedStack(t)
	dir := t.TempDir()
	bucket := "slipway-ds-e2e-" + strings.ToLower(testenv.Unique())
	tmpl := filepath.Join(dir, "fast.tmpl")
	if err := os.WriteFile(tmpl, []byte("NAME = fast\nTYPE = IMAGE_DS\nDS_MAD = s3\nBUCKET = \""+bucket+"\"\nLIMIT_MB = 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := must(t, slipway(t, flags, "datastore", "create", tmpl))
	if strings.TrimSpace(r.stdout) != "ID: 100" {
		t.Fatalf("datastore create: %q", r.stdout)
	}
	disk := testenv.WriteDisk(t, filepath.Join(dir, "disk.raw"), 6<<20, strings.NewReader("six MiB"))
	must(t, slipway(t, flags, "image", "create", "--name", "six", "--type", "DATABLOCK", "--datastore", "fast", "--path", disk, "--wait", "--timeout", "2m"))
	r = must(t, slipway(t, flags, "datastore", "list"))
	if !lineHas(r.stdout, "ID", "NAME", "SIZE", "AVA", "CLUSTERS", "IMAGES", "TYPE", "DS", "TM", "STAT") ||
		!lineHas(r.stdout, "1", "default", "-", "-", "0", "0", "img", "s3", "s3", "on") ||
		!lineHas(r.stdout, "2", "files", "-", "-", "0", "0", "fil", "s3", "s3", "on") ||
		!lineHas(r.stdout, "100", "fast", "10M", "40%", "0", "1", "img", "s3", "s3", "on") {
		t.Errorf("datastore list:\n%s", r.stdout)
	}
	t.Logf("datastore list:\n%s", r.stdout)
	r = slipway(t, flags, "image", "create", "--name", "five", "--type", "DATABLOCK", "--datastore", "fast", "--size", "5")
	if r.code != 1 || !strings.Contains(r.stderr, "datastore fast is full: its capacity is 10 MB (LIMIT_MB), its images take 6 MB and this one needs 5 MB (4 MB free)") {
		t.Errorf("an image past the capacity: exit %d, stderr %q", r.code, r.stderr)
	}
	r = must(t, slipway(t, flags, "datastore", "show", "fast"))
	if !strings.Contains(r.stdout, "DATASTORE 100 INFORMATION") || !lineHas(r.stdout, "BUCKET", bucket) ||
		!lineHas(r.stdout, "TOTAL", ": 10M") || !lineHas(r.stdout, "FREE", ": 4M") || !lineHas(r.stdout, "USED", ": 6M") {
		t.Errorf("datastore show fast:\n%s", r.stdout)
	}
	t.Logf("datastore show fast:\n%s", r.stdout)
	r = slipway(t, flags, "datastore", "delete", "100")
	if r.code != 1 || !strings.Contains(r.stderr, "datastore 100 has 1 images: ") {
		t.Errorf("delete of a datastore with an image: exit %d, stderr %q", r.code, r.stderr)
	}
	r = slipway(t, flags, "datastore", "delete", "default")
	if r.code != 1 || !strings.Contains(r.stderr, "datastore 1 (default) is one of the catalog's configured datastores: it cannot be deleted") {
		t.Errorf("delete of default: exit %d, stderr %q", r.code, r.stderr)
	}
	// Use: alice may not create images in fast (600) until chmod 604.
	creds := filepath.Join(dir, "alice.creds")
	must(t, slipway(t, flags, "user", "create", "alice", "--out", creds))
	alice := withCreds(flags, creds)
	r = slipway(t, alice, "image", "create", "--name", "a1", "--type", "DATABLOCK", "--datastore", "fast", "--size", "1")
	if r.code != 1 || !strings.Contains(r.stderr, "user alice may not use datastore 100 (owner oneadmin, group oneadmin, permissions um-------)") {
		t.Errorf("alice's image in fast (600): exit %d, stderr %q", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "datastore", "chmod", "fast", "604"))
	r = must(t, slipway(t, flags, "datastore", "show", "100"))
	if !strings.Contains(r.stdout, "PERMISSIONS") || !lineHas(r.stdout, "OTHER", "u--") {
		t.Errorf("datastore show after chmod 604:\n%s", r.stdout)
	}
	must(t, slipway(t, alice, "image", "create", "--name", "a1", "--type", "DATABLOCK", "--datastore", "fast", "--size", "1"))
	// (That alice cannot chmod is the catalog's TestDatastorePermissions:
	// the server refuses her publish, and the CLI would wait out its timeout.)
	ftmpl := filepath.Join(dir, "ctx.tmpl")
	if err := os.WriteFile(ftmpl, []byte("NAME = ctx\nTYPE = FILE_DS\nDS_MAD = s3\nBUCKET = \""+bucket+"-files\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, slipway(t, flags, "datastore", "create", ftmpl))
	must(t, slipway(t, flags, "datastore", "delete", "ctx"))
	r = slipway(t, flags, "datastore", "show", "ctx")
	if r.code == 0 || !strings.Contains(r.stderr, `datastore "ctx" does not exist`) {
		t.Errorf("show of the deleted datastore: exit %d, stderr %q", r.code, r.stderr)
	}
}
