package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
)

const saga = "0b7a3c1e-2f4d-4e5a-9b6c-7d8e9f0a1b2c"

func TestLocationsCheckDest(t *testing.T) {
	l := blob.DefaultLocations()
	ok := []string{
		"s3://slipway-default/images/7/" + saga + "/disk.qcow2",
		"s3://slipway-files/images/7/" + saga + "/disk.raw",
		"s3://slipway-default/images/7/" + saga + "/disk",
	}
	for _, u := range ok {
		if err := l.CheckDest(u, 7, saga); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	bad := map[string]string{
		"s3://slipway-default/images/7/disk.qcow2":                           "derived",
		"s3://slipway-default/images/8/" + saga + "/disk.qcow2":              "derived",
		"s3://slipway-default/images/7/" + saga + "/../8/disk.qcow2":         "derived",
		"s3://slipway-default/images/7/" + saga + "/disk.qcow2/x":            "derived",
		"s3://slipway-uploads/images/7/" + saga + "/disk.qcow2":              "not a datastore bucket",
		"s3://elsewhere/images/7/" + saga + "/disk.qcow2":                    "not a datastore bucket",
		"https://example.org/images/7/" + saga + "/disk.qcow2":               "not s3",
		"s3://slipway-default/images/7/0B7A3C1E-2F4D-4E5A-9B6C-7D8E9F0A1B2C": "derived",
	}
	for u, want := range bad {
		if err := l.CheckDest(u, 7, saga); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one mentioning %q", u, err, want)
		}
	}
	if err := l.CheckDest(ok[0], 7, "not-a-uuid"); err == nil || !strings.Contains(err.Error(), "correlation") {
		t.Errorf("a saga that is not a UUID: %v", err)
	}
	if err := l.CheckBuildDest("s3://slipway-uploads/builds/7/"+saga+"/disk.raw", 7, saga); err != nil {
		t.Error(err)
	}
	if err := l.CheckBuildDest("s3://slipway-uploads/uploads/x/disk.raw", 7, saga); err == nil {
		t.Error("a build dest outside builds/<id>/<saga>/ was accepted")
	}
}

func TestLocationsCheckSourceAndStaged(t *testing.T) {
	l := blob.DefaultLocations()
	l.ImportBuckets = []string{"operator-imports"}
	for _, u := range []string{"s3://slipway-uploads/uploads/a/b.raw", "s3://operator-imports/any/key", "https://x/y"} {
		if err := l.CheckSource(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"s3://slipway-default/images/1/" + saga + "/disk.raw", "s3://other/key"} {
		err := l.CheckSource(u)
		bucket, _, _ := blob.ParseURL(u)
		if err == nil || !strings.Contains(err.Error(), `bucket "`+bucket+`"`) || !strings.Contains(err.Error(), blob.EnvImportBuckets) {
			t.Errorf("%s: err %v, want one naming the bucket and %s", u, err, blob.EnvImportBuckets)
		}
	}
	// A datastore bucket listed for imports still never qualifies.
	l.ImportBuckets = append(l.ImportBuckets, "slipway-default")
	if err := l.CheckSource("s3://slipway-default/images/1/x"); err == nil {
		t.Error("a datastore bucket listed for imports was read")
	}
	for _, tc := range [][2]string{{"s3://slipway-uploads/uploads/alice/6f1c/disk.vmdk", "alice"},
		{"s3://slipway-uploads/kernel-registry/6f1c/vmlinuz", "kernel-registry"},
		{"s3://slipway-uploads/vms/7/saveas-0-12.qcow2", "launcher"},
		{"s3://slipway-uploads/ova/" + saga + "/disk1", "catalog"}} {
		if err := l.CheckStaged(tc[0], tc[1]); err != nil {
			t.Error(err)
		}
	}
	// Each stager consumes only what it staged: a user never another
	// user's upload nor a service's, a service never a user's.
	for _, tc := range [][2]string{
		{"s3://slipway-uploads/uploads/bob/6f1c/disk.vmdk", "alice"},
		{"s3://slipway-uploads/uploads/alice/6f1c/disk.vmdk", "alic"},
		{"s3://slipway-uploads/uploads/alice/6f1c/disk.vmdk", "kernel-registry"},
		{"s3://slipway-uploads/kernel-registry/6f1c/vmlinuz", "alice"},
		{"s3://slipway-uploads/vms/7/saveas-0-12.qcow2", "kernel-registry"},
		{"s3://slipway-uploads/uploads/alice/6f1c/disk.vmdk", "converter"},
		{"s3://slipway-uploads/uploads/6f1c/disk.vmdk", "6f1c"},
		{"s3://slipway-uploads/uploads/alice/../bob/x/disk", "alice"},
		{"s3://slipway-uploads/uploads/a/b/c", "a/b"},
		{"s3://slipway-uploads/uploads/x/y", "*"},
		{"s3://slipway-uploads/builds/1/disk.raw", "alice"},
		{"s3://slipway-uploads/uploads/alice/disk.vmdk", "alice"},
		{"s3://slipway-uploads/uploads/alice/a/b/c", "alice"},
		{"s3://operator-imports/uploads/alice/a/b", "alice"},
		{"s3://slipway-default/uploads/alice/a/b", "alice"},
		{"s3://slipway-uploads/ova/" + saga + "/disk1", "alice"},
		{"s3://slipway-uploads/uploads/alice/6f1c/disk.vmdk", "catalog"},
	} {
		if err := l.CheckStaged(tc[0], tc[1]); err == nil {
			t.Errorf("%s accepted as staged by %q", tc[0], tc[1])
		}
	}
}

func TestKernelUploadsAndSavedDisks(t *testing.T) {
	l := blob.DefaultLocations()
	key := blob.StagingKey(blob.UserKernelPrefix("oneadmin"), "/home/me/linux-image.deb")
	if !strings.HasPrefix(key, "kernels/oneadmin/") || !strings.HasSuffix(key, "/linux-image.deb") {
		t.Fatalf("StagingKey = %q", key)
	}
	if err := l.CheckKernelUpload(blob.URL(l.UploadBucket, key), "oneadmin"); err != nil {
		t.Error(err)
	}
	if err := l.CheckKernelUpload(blob.URL(l.UploadBucket, key), "alice"); err == nil {
		t.Error("alice's add consumed oneadmin's kernel upload")
	}
	for _, u := range []string{"s3://slipway-uploads/uploads/oneadmin/6f1c/disk.vmdk", "s3://slipway-uploads/kernels/oneadmin/x.deb",
		"s3://slipway-uploads/kernels/oneadmin/a/b/c", "s3://slipway-uploads/vms/7/disk-0.qcow2", "s3://slipway-uploads/kernels/6f1c/x.deb",
		"s3://slipway-default/kernels/oneadmin/a/b", "s3://slipway-uploads/kernel-registry/6f1c/vmlinuz", "/etc/passwd"} {
		if err := l.CheckKernelUpload(u, "oneadmin"); err == nil || !strings.Contains(err.Error(), "kernels/oneadmin/<id>/<file>") {
			t.Errorf("%s: err %v, want a refusal naming the form", u, err)
		}
	}
	saved := blob.URL(l.UploadBucket, blob.SavedDiskKey(7, 0, "qcow2"))
	if saved != "s3://slipway-uploads/vms/7/disk-0.qcow2" {
		t.Fatalf("SavedDiskKey URL = %s", saved)
	}
	if err := l.CheckSavedDisk(saved, 7); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		u  string
		vm int64
	}{{saved, 8}, {"s3://slipway-uploads/uploads/6f1c/disk.vmdk", 7}, {"s3://slipway-uploads/vms/7/saveas-0-12.qcow2", 7},
		{"s3://slipway-uploads/vms/7/disk-0.qcow2/x", 7}, {"s3://slipway-default/vms/7/disk-0.qcow2", 7},
		{"s3://slipway-uploads/vms/7/../8/disk-0.qcow2", 7}} {
		if err := l.CheckSavedDisk(c.u, c.vm); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("for VM %d", c.vm)) {
			t.Errorf("%s for VM %d: err %v, want a refusal", c.u, c.vm, err)
		}
	}
}

func TestLocationsFromEnv(t *testing.T) {
	t.Setenv(blob.EnvImportBuckets, " a-bucket, other-bucket ,")
	t.Setenv(blob.EnvDefaultBucket, "my-default")
	l, err := blob.LocationsFromEnv()
	// The market bucket (default) is an import bucket too: imports read
	// what private marketplaces publish.
	if err != nil || len(l.ImportBuckets) != 3 || l.ImportBuckets[1] != "other-bucket" || l.ImportBuckets[2] != blob.DefaultMarketBucket ||
		!l.IsMarketBucket(blob.DefaultMarketBucket) || !l.IsDatastoreBucket("my-default") {
		t.Fatalf("%+v %v", l, err)
	}
	if err := l.CheckSource("s3://slipway-market/apps/a/disk.qcow2"); err != nil {
		t.Errorf("a market blob as an import source: %v", err)
	}
	t.Setenv(blob.EnvMarketBuckets, "m-one,m-two")
	if l, err = blob.LocationsFromEnv(); err != nil || !l.IsMarketBucket("m-two") || l.IsMarketBucket(blob.DefaultMarketBucket) ||
		l.CheckSource("s3://m-one/apps/a/disk.raw") != nil {
		t.Fatalf("%s: %+v %v", blob.EnvMarketBuckets, l, err)
	}
	for _, bad := range []string{"my-default", "slipway-uploads"} {
		t.Setenv(blob.EnvMarketBuckets, bad)
		if _, err := blob.LocationsFromEnv(); err == nil || !strings.Contains(err.Error(), blob.EnvMarketBuckets) {
			t.Errorf("%s=%s: %v, want a refusal", blob.EnvMarketBuckets, bad, err)
		}
	}
	t.Setenv(blob.EnvMarketBuckets, "")
	t.Setenv(blob.EnvImportBuckets, "my-default")
	if _, err := blob.LocationsFromEnv(); err == nil || !strings.Contains(err.Error(), blob.EnvImportBuckets) {
		t.Fatalf("a datastore bucket in %s: %v", blob.EnvImportBuckets, err)
	}
	t.Setenv(blob.EnvImportBuckets, "Bad_Bucket")
	if _, err := blob.LocationsFromEnv(); err == nil {
		t.Fatal("an invalid bucket name was accepted")
	}
}

func TestOwnedObjects(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	data := []byte("written by command A")
	if _, err := s.Put(ctx, bucket, "k", bytes.NewReader(data), int64(len(data)), blob.OwnedBy("A")); err != nil {
		t.Fatal(err)
	}
	if oi, err := s.Stat(ctx, bucket, "k"); err != nil || oi.Command != "A" {
		t.Fatalf("stat %+v %v", oi, err)
	}
	if err := s.CheckFresh(ctx, bucket, "k", "A"); err != nil {
		t.Errorf("the same command: %v", err)
	}
	if err := s.CheckFresh(ctx, bucket, "k", "B"); !errors.Is(err, blob.ErrTaken) {
		t.Errorf("another command: %v", err)
	}
	if err := s.CheckFresh(ctx, bucket, "nothing", "B"); err != nil {
		t.Errorf("a free key: %v", err)
	}
	u := blob.URL(bucket, "k")
	if deleted, err := s.DeleteIfOwned(ctx, u, "B"); err != nil || deleted {
		t.Fatalf("command B deleted A's object: %v %v", deleted, err)
	}
	if _, err := s.Stat(ctx, bucket, "k"); err != nil {
		t.Fatalf("A's object is gone: %v", err)
	}
	if deleted, err := s.DeleteIfOwned(ctx, u, "A"); err != nil || !deleted {
		t.Fatalf("command A could not delete its object: %v %v", deleted, err)
	}
	if _, err := s.Stat(ctx, bucket, "k"); !blob.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	// Multipart uploads carry the owner too.
	big := bytes.Repeat([]byte("x"), testPart+1)
	if _, err := s.Put(ctx, bucket, "big", bytes.NewReader(big), int64(len(big)), blob.OwnedBy("C")); err != nil {
		t.Fatal(err)
	}
	if oi, err := s.Stat(ctx, bucket, "big"); err != nil || oi.Command != "C" {
		t.Fatalf("multipart stat %+v %v", oi, err)
	}
}

func TestOVAStaging(t *testing.T) {
	l := blob.DefaultLocations()
	staging := l.OVAStaging(saga)
	if staging != "s3://slipway-uploads/ova/"+saga+"/" || blob.OVADisk(staging, 2) != staging+"disk2" {
		t.Fatalf("staging %s, disk %s", staging, blob.OVADisk(staging, 2))
	}
	if err := l.CheckOVAStaging(staging, saga); err != nil {
		t.Error(err)
	}
	other := "0f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
	for _, bad := range []string{l.OVAStaging(other), "s3://slipway-uploads/ova/" + saga + "/../x/", "s3://slipway-default/ova/" + saga + "/", staging + "disk0"} {
		if err := l.CheckOVAStaging(bad, saga); err == nil || !strings.Contains(err.Error(), "derived from the saga") {
			t.Errorf("CheckOVAStaging(%s): %v", bad, err)
		}
	}
	if err := l.CheckOVAStaging("s3://slipway-uploads/ova/x/", "x"); err == nil {
		t.Error("a saga that is not a UUID was accepted")
	}
}

// TestCreatedDatastoreBucketsAreDatastores: a slipway-ds-* bucket is a datastore's for
// every service (a created datastore), so a derived dest there passes and
// an import may not read it; the upload bucket may not take the prefix.
func TestCreatedDatastoreBucketsAreDatastores(t *testing.T) {
	l := blob.DefaultLocations()
	if !l.IsDatastoreBucket(blob.DatastoreBucketPrefix+"fast") || l.IsDatastoreBucket("slipway-dsx") || l.IsDatastoreBucket("slipway-uploads") {
		t.Fatal("IsDatastoreBucket does not follow the prefix")
	}
	saga := "0b8e1c3e-8a0f-4b53-9d5c-7d0f4f2f5e1a"
	if err := l.CheckDest("s3://slipway-ds-fast/images/7/"+saga+"/disk.qcow2", 7, saga); err != nil {
		t.Errorf("a derived dest in a created datastore: %v", err)
	}
	if err := l.CheckDest("s3://slipway-dsx/images/7/"+saga+"/disk.qcow2", 7, saga); err == nil || !strings.Contains(err.Error(), "slipway-ds-*") {
		t.Errorf("a dest outside the datastores: %v", err)
	}
	if err := l.CheckSource("s3://slipway-ds-fast/images/7/" + saga + "/disk.qcow2"); err == nil {
		t.Error("an import may read a created datastore's blob")
	}
	if err := l.CheckImageBlob("s3://slipway-ds-fast/images/7/" + saga + "/disk.qcow2"); err != nil {
		t.Errorf("an image blob in a created datastore: %v", err)
	}
	t.Setenv(blob.EnvImportBuckets, "slipway-ds-fast")
	if _, err := blob.LocationsFromEnv(); err == nil || !strings.Contains(err.Error(), blob.EnvImportBuckets) {
		t.Errorf("a created datastore's bucket in %s: %v", blob.EnvImportBuckets, err)
	}
	t.Setenv(blob.EnvImportBuckets, "")
	t.Setenv(blob.EnvUploadBucket, "slipway-ds-uploads")
	if _, err := blob.LocationsFromEnv(); err == nil || !strings.Contains(err.Error(), "names the buckets of created datastores") {
		t.Errorf("an upload bucket with the datastore prefix: %v", err)
	}
}

// TestUserStagingKeyRefusesWhatIsNotOneName: the file name a browser sends
// becomes the last segment of a staged key only when it is one printable
// segment; every accepted key is one CheckStaged takes for that user and
// no other.
func TestUserStagingKeyRefusesWhatIsNotOneName(t *testing.T) {
	l := blob.DefaultLocations()
	for _, name := range []string{"disk.qcow2", "my disk (1).img", "ünïcode.raw", "a..b", "-rf", strings.Repeat("x", 255)} {
		key, err := blob.UserStagingKey("alice", name)
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		if !strings.HasPrefix(key, "uploads/alice/") || !strings.HasSuffix(key, "/"+name) {
			t.Errorf("%q: key %q", name, key)
		}
		if err := l.CheckStaged(blob.URL(l.UploadBucket, key), "alice"); err != nil {
			t.Errorf("%q: CheckStaged(alice): %v", name, err)
		}
		if err := l.CheckStaged(blob.URL(l.UploadBucket, key), "bob"); err == nil {
			t.Errorf("%q: bob may consume alice's key %s", name, key)
		}
	}
	for _, name := range []string{"", ".", "..", "../bob/x", "a/b", "/etc/passwd", `a\b`, `..\..\x`, "a\x00b", "line\nfeed", "tab\t", "del\x7f",
		"\xff\xfe", strings.Repeat("x", 256), "c1\u0085ctl"} {
		if key, err := blob.UserStagingKey("alice", name); err == nil {
			t.Errorf("%q: accepted as %q", name, key)
		}
	}
	for _, user := range []string{"", "Alice", "a/b", "..", "*", "catalog.x"} {
		if key, err := blob.UserStagingKey(user, "disk.raw"); err == nil {
			t.Errorf("user %q: accepted as %q", user, key)
		}
	}
}

// TestUserStagingOwnerTakesOnlyAUsersArea: the staged sweep deletes what
// lies in a user's staging area, so every key that is not
// uploads/<user>/… or kernels/<user>/… under a name a user can have is
// no one's.
func TestUserStagingOwnerTakesOnlyAUsersArea(t *testing.T) {
	mine := map[string]string{
		"uploads/alice/0b7a/disk.qcow2":                 "alice",
		"kernels/bob_2/0b7a/linux.deb":                  "bob_2",
		"uploads/alice/stray":                           "alice", // written with alice's keys, never importable
		"uploads/alice/a/b/c":                           "alice",
		blob.StagingKey("uploads/carol/", "/x/y/z.raw"): "carol",
	}
	for key, want := range mine {
		if got, ok := blob.UserStagingOwner(key); !ok || got != want {
			t.Errorf("UserStagingOwner(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
	for _, key := range []string{
		"", "uploads/", "uploads/alice", "uploads/alice/", "kernels/alice/",
		"uploads//x/disk", "uploads/../x/disk", "uploads/./x/disk", "uploads/Alice/x/disk", "uploads/*/x/disk",
		"uploads/1alice/x/disk", "uploads/al ice/x/disk", "uploads/alice\n/x/disk",
		"kernels/5/vmlinux",              // kernel-registry's kept kernel, should the buckets be one
		"builds/7/" + saga + "/disk.raw", // the builder's
		"ova/" + saga + "/disk0", "kernel-registry/0b7a/vmlinuz", "vms/7/disk-0.qcow2",
		"images/7/" + saga + "/disk.raw", "uploadsx/alice/x/disk", "x/uploads/alice/x/disk", "/uploads/alice/x/disk",
		"uploads/" + strings.Repeat("a", 129) + "/x/disk",
	} {
		if got, ok := blob.UserStagingOwner(key); ok {
			t.Errorf("UserStagingOwner(%q) = %q: that is no user's staging area", key, got)
		}
	}
}
