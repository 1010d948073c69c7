package s3iam_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/s3iam"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

var allServices = []string{
	schemas.ServiceCatalog, schemas.ServiceConverter, schemas.ServiceMarketDockerhub, schemas.ServiceMarketLxc, schemas.ServiceBuilder,
	schemas.ServiceCryptoLUKS, schemas.ServiceKernelRegistry, schemas.ServiceLauncher,
}

func put(t *testing.T, st *blob.Store, bucket, key string) error {
	t.Helper()
	_, err := st.Put(context.Background(), bucket, key, bytes.NewReader([]byte("data of "+key)), int64(len("data of "+key)))
	return err
}

func get(st *blob.Store, bucket, key string) (string, error) {
	return testenv.ReadObject(context.Background(), st, bucket, key)
}

func store(t *testing.T, cfg blob.Config) *blob.Store {
	t.Helper()
	st, err := blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// provisioned is a MinIO with every service provisioned, the root store
// and each service's store.
func provisioned(t *testing.T) (s3 testenv.S3, root *blob.Store, svc map[string]*blob.Store, dir string) {
	t.Helper()
	s3 = testenv.MinIO(t)
	dir = t.TempDir()
	keys, err := s3iam.Provision(context.Background(), s3.BlobConfig(), s3iam.DefaultLayout(), allServices, dir)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	svc = map[string]*blob.Store{}
	for name, k := range keys {
		svc[name] = store(t, s3.BlobConfig().WithKeys(k))
	}
	return s3, store(t, s3.BlobConfig()), svc, dir
}

func TestProvisionIsIdempotentAndWritesPrivateFiles(t *testing.T) {
	s3, _, svc, dir := provisioned(t)
	if _, ok := svc[schemas.ServiceMarketDockerhub]; ok {
		t.Errorf("market-dockerhub got S3 keys: it never touches S3")
	}
	if _, ok := svc[schemas.ServiceMarketLxc]; !ok {
		t.Errorf("market-lxc got no S3 keys: it publishes into the marketplace buckets")
	}
	first := map[string]blob.Keys{}
	for name := range svc {
		fi, err := os.Stat(s3iam.KeysFile(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s keys file: %v %v, want mode 0600", name, fi, err)
		}
		if first[name], err = blob.ReadKeys(s3iam.KeysFile(dir, name)); err != nil {
			t.Fatal(err)
		}
		if first[name].SecretKey == s3.SecretKey || first[name].AccessKey == s3.AccessKey {
			t.Fatalf("%s was given the root keys", name)
		}
	}
	again, err := s3iam.Provision(context.Background(), s3.BlobConfig(), s3iam.DefaultLayout(), allServices, dir)
	if err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	for name, k := range again {
		if k != first[name] {
			t.Errorf("%s: keys changed on a second Provision", name)
		}
	}
	// The buckets exist and the service keys work after the second run.
	if err := put(t, svc[schemas.ServiceConverter], blob.DefaultDatastoreBucket, "images/1/x/disk"); err != nil {
		t.Fatalf("converter writes an image blob: %v", err)
	}
}

// TestServiceKeysAreScoped tries what each service's policy must refuse.
func TestServiceKeysAreScoped(t *testing.T) {
	_, root, svc, _ := provisioned(t)
	ctx := context.Background()
	ds, up, files := blob.DefaultDatastoreBucket, blob.DefaultUploadBucket, blob.DefaultFilesBucket
	for _, o := range [][2]string{{ds, "images/7/s/disk"}, {ds, "other/x"}, {up, "uploads/bob/u/f"}, {files, "kernels/1/vmlinux"}} {
		if err := put(t, root, o[0], o[1]); err != nil {
			t.Fatal(err)
		}
	}
	type try struct {
		svc, what string
		do        func(st *blob.Store) error
	}
	for _, tc := range []try{
		{schemas.ServiceBuilder, "delete outside images/ of a datastore", func(st *blob.Store) error { return st.Delete(ctx, ds, "other/x") }},
		{schemas.ServiceBuilder, "write a user's upload", func(st *blob.Store) error { return put(t, st, up, "uploads/bob/u/f") }},
		{schemas.ServiceBuilder, "stage an OVA's disk", func(st *blob.Store) error { return put(t, st, up, "ova/s/disk1") }},
		{schemas.ServiceBuilder, "delete a user's upload", func(st *blob.Store) error { return st.Delete(ctx, up, "uploads/bob/u/f") }},
		{schemas.ServiceLauncher, "delete an image blob", func(st *blob.Store) error { return st.Delete(ctx, ds, "images/7/s/disk") }},
		{schemas.ServiceLauncher, "write an image blob", func(st *blob.Store) error { return put(t, st, ds, "images/7/s/disk") }},
		{schemas.ServiceCryptoLUKS, "read an upload", func(st *blob.Store) error { _, err := get(st, up, "uploads/bob/u/f"); return err }},
		{schemas.ServiceCryptoLUKS, "delete a kernel", func(st *blob.Store) error { return st.Delete(ctx, files, "kernels/1/vmlinux") }},
		{schemas.ServiceConverter, "write to the upload bucket", func(st *blob.Store) error { return put(t, st, up, "uploads/bob/u/f") }},
		{schemas.ServiceConverter, "delete an upload", func(st *blob.Store) error { return st.Delete(ctx, up, "uploads/bob/u/f") }},
		{schemas.ServiceKernelRegistry, "delete an image blob", func(st *blob.Store) error { return st.Delete(ctx, ds, "images/7/s/disk") }},
		{schemas.ServiceCatalog, "make a bucket", func(st *blob.Store) error {
			return st.Client().MakeBucket(ctx, "slipway-evil", minio.MakeBucketOptions{})
		}},
		{schemas.ServiceCatalog, "delete outside images/ of a datastore", func(st *blob.Store) error { return st.Delete(ctx, ds, "other/x") }},
		{schemas.ServiceMarketLxc, "write an image blob", func(st *blob.Store) error { return put(t, st, ds, "images/7/s/disk") }},
		{schemas.ServiceMarketLxc, "delete an image blob", func(st *blob.Store) error { return st.Delete(ctx, ds, "images/7/s/disk") }},
		{schemas.ServiceMarketLxc, "read outside images/ of a datastore", func(st *blob.Store) error { _, err := get(st, ds, "other/x"); return err }},
		{schemas.ServiceMarketLxc, "read an upload", func(st *blob.Store) error { _, err := get(st, up, "uploads/bob/u/f"); return err }},
		{schemas.ServiceMarketLxc, "read a kernel", func(st *blob.Store) error { _, err := get(st, files, "kernels/1/vmlinux"); return err }},
	} {
		if err := tc.do(svc[tc.svc]); !blob.IsDenied(err) {
			t.Errorf("%s could %s: %v, want AccessDenied", tc.svc, tc.what, err)
		}
	}
	// Nothing the refused calls aimed at changed.
	for _, o := range [][2]string{{ds, "images/7/s/disk"}, {ds, "other/x"}, {up, "uploads/bob/u/f"}, {files, "kernels/1/vmlinux"}} {
		if got, err := get(root, o[0], o[1]); err != nil || got != "data of "+o[1] {
			t.Errorf("%s/%s after the refused calls: %q, %v", o[0], o[1], got, err)
		}
	}
	// And what each needs works.
	for _, tc := range []try{
		{schemas.ServiceLauncher, "read an image blob", func(st *blob.Store) error { _, err := get(st, ds, "images/7/s/disk"); return err }},
		{schemas.ServiceLauncher, "read a kernel", func(st *blob.Store) error { _, err := get(st, files, "kernels/1/vmlinux"); return err }},
		{schemas.ServiceLauncher, "stage a saved disk", func(st *blob.Store) error { return put(t, st, up, "vms/3/disk-0.qcow2") }},
		{schemas.ServiceConverter, "read an upload", func(st *blob.Store) error { _, err := get(st, up, "uploads/bob/u/f"); return err }},
		{schemas.ServiceBuilder, "stage a build", func(st *blob.Store) error { return put(t, st, up, "builds/7/s/disk.raw") }},
		{schemas.ServiceConverter, "stage an OVA's disk", func(st *blob.Store) error { return put(t, st, up, "ova/s/disk1") }},
		{schemas.ServiceCatalog, "delete an OVA's staged disk", func(st *blob.Store) error { return st.DeletePrefix(ctx, up, "ova/s/") }},
		{schemas.ServiceBuilder, "read a staged rootfs", func(st *blob.Store) error { _, err := get(st, up, "uploads/bob/u/f"); return err }},
		{schemas.ServiceCatalog, "check a bucket exists", func(st *blob.Store) error { return st.EnsureBucket(ctx, ds) }},
		{schemas.ServiceCatalog, "copy a saved disk in", func(st *blob.Store) error {
			_, err := st.Copy(ctx, up, "vms/3/disk-0.qcow2", ds, "images/8/s/disk.qcow2")
			return err
		}},
		{schemas.ServiceCatalog, "delete an image's blobs", func(st *blob.Store) error { return st.DeletePrefix(ctx, ds, "images/8/") }},
		{schemas.ServiceKernelRegistry, "keep a kernel", func(st *blob.Store) error { return put(t, st, files, "kernels/2/vmlinux") }},
		{schemas.ServiceMarketLxc, "read an image blob", func(st *blob.Store) error { _, err := get(st, ds, "images/7/s/disk"); return err }},
		{schemas.ServiceMarketLxc, "copy an image blob into a marketplace", func(st *blob.Store) error {
			_, err := st.Copy(ctx, ds, "images/7/s/disk", blob.DefaultMarketBucket, "apps/a/disk.qcow2")
			return err
		}},
		{schemas.ServiceMarketLxc, "delete a published app", func(st *blob.Store) error { return st.DeletePrefix(ctx, blob.DefaultMarketBucket, "apps/a/") }},
		{schemas.ServiceConverter, "read a marketplace blob", func(st *blob.Store) error {
			if err := put(t, root, blob.DefaultMarketBucket, "apps/b/disk.raw"); err != nil {
				return err
			}
			_, err := get(st, blob.DefaultMarketBucket, "apps/b/disk.raw")
			return err
		}},
	} {
		if err := tc.do(svc[tc.svc]); err != nil {
			t.Errorf("%s cannot %s: %v", tc.svc, tc.what, err)
		}
	}
}

// TestTemporaryKeysAreScoped: keys the catalog obtains for one object read
// that object only; upload keys write under the user's own prefixes only.
func TestTemporaryKeysAreScoped(t *testing.T) {
	s3, root, _, dir := provisioned(t)
	ctx := context.Background()
	ds, up := blob.DefaultDatastoreBucket, blob.DefaultUploadBucket
	for _, k := range []string{"images/1/s/disk.qcow2", "images/2/s/disk.qcow2"} {
		if err := put(t, root, ds, k); err != nil {
			t.Fatal(err)
		}
	}
	catKeys, err := blob.ReadKeys(s3iam.KeysFile(dir, schemas.ServiceCatalog))
	if err != nil {
		t.Fatal(err)
	}
	catalog := s3.BlobConfig().WithKeys(catKeys)
	p, err := s3iam.ReadObject(ds, "images/1/s/disk.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := s3iam.AssumeRole(ctx, catalog, p, time.Minute)
	if err != nil {
		t.Fatalf("AssumeRole: %v", err)
	}
	if tmp.SessionToken == "" || time.Until(tmp.Expiration) < 10*time.Minute || time.Until(tmp.Expiration) > 20*time.Minute {
		t.Errorf("temporary keys: token %q, expire in %s (want the 15 minute floor)", tmp.SessionToken, time.Until(tmp.Expiration))
	}
	one := store(t, tmp.Config(s3.BlobConfig()))
	if got, err := get(one, ds, "images/1/s/disk.qcow2"); err != nil || got != "data of images/1/s/disk.qcow2" {
		t.Fatalf("read the object the keys are for: %q, %v", got, err)
	}
	if _, err := get(one, ds, "images/2/s/disk.qcow2"); !blob.IsDenied(err) {
		t.Errorf("keys for image 1 read image 2: %v, want AccessDenied", err)
	}
	if err := one.Delete(ctx, ds, "images/1/s/disk.qcow2"); !blob.IsDenied(err) {
		t.Errorf("read keys deleted: %v, want AccessDenied", err)
	}

	p, err = s3iam.UserUploads(s3iam.DefaultLayout(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	tmp, err = s3iam.AssumeRole(ctx, catalog, p, time.Hour)
	if err != nil {
		t.Fatalf("AssumeRole uploads: %v", err)
	}
	alice := store(t, tmp.Config(s3.BlobConfig()))
	for _, k := range []string{"uploads/alice/u1/disk.img", "kernels/alice/u2/vmlinuz"} {
		if err := put(t, alice, up, k); err != nil {
			t.Errorf("alice stages %s: %v", k, err)
		}
	}
	for _, k := range []string{"uploads/bob/u1/disk.img", "kernels/bob/u1/vmlinuz", "uploads/alice-x/u/f", "vms/1/disk-0.qcow2"} {
		if err := put(t, alice, up, k); !blob.IsDenied(err) {
			t.Errorf("alice's upload keys wrote %s: %v, want AccessDenied", k, err)
		}
	}
	if _, err := get(alice, up, "uploads/alice/u1/disk.img"); !blob.IsDenied(err) {
		t.Errorf("upload keys read: %v, want AccessDenied", err)
	}
	if _, err := get(alice, ds, "images/1/s/disk.qcow2"); !blob.IsDenied(err) {
		t.Errorf("upload keys read an image: %v, want AccessDenied", err)
	}
	if err := put(t, root, up, "uploads/bob/u1/disk.img"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Delete(ctx, up, "uploads/bob/u1/disk.img"); !blob.IsDenied(err) {
		t.Errorf("alice's upload keys deleted bob's upload: %v, want AccessDenied", err)
	}
	if err := alice.Delete(ctx, up, "uploads/alice/u1/disk.img"); err != nil {
		t.Errorf("alice removes her own upload: %v", err)
	}
}

// TestPolicyNamesCannotWiden feeds the validator names that would widen a
// policy if they reached it.
func TestPolicyNamesCannotWiden(t *testing.T) {
	l := s3iam.DefaultLayout()
	for _, user := range []string{"*", "a*", "alice/*", "..", "../bob", "a/b", `al"ice`, "al'ice", "${aws:username}", "a?", "", "Alice", "alice ", "a\x00", "ali\nce", "ALICE", ".alice"} {
		if p, err := s3iam.UserUploads(l, user); err == nil {
			t.Errorf("UserUploads(%q) = %+v, want an error", user, p)
		}
	}
	for _, key := range []string{"images/*", "images/1/*/disk", "images/../2/disk", "images//disk", "/images/1", "images/1/", "images/$x", `images/"1`, "images/1?", "", "images/./1", "images/1/.."} {
		if p, err := s3iam.ReadObject(blob.DefaultDatastoreBucket, key); err == nil {
			t.Errorf("ReadObject(%q) = %+v, want an error", key, p)
		}
	}
	for _, b := range []string{"*", "slipway-*", "a/b", "Slipway", `b"`, "..", "bu..cket"} {
		if _, err := s3iam.ReadObject(b, "images/1/s/disk"); err == nil {
			t.Errorf("ReadObject(bucket %q) accepted", b)
		}
	}
	// What passes names exactly the prefix, ending in the one wildcard.
	p, err := s3iam.UserUploads(l, "alice_2-b")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `"Resource":["arn:aws:s3:::slipway-uploads/uploads/alice_2-b/*","arn:aws:s3:::slipway-uploads/kernels/alice_2-b/*"]`
	if !strings.Contains(string(doc), want) {
		t.Errorf("policy %s, want %s", doc, want)
	}
}

// TestCreatedDatastoreBuckets: the buckets of created datastores
// (blob.DatastoreBucketPrefix) need no new policy: the catalog may create
// them and nothing else, and each service has in them what it has in the
// configured datastores — under images/ only.
func TestCreatedDatastoreBuckets(t *testing.T) {
	_, root, svc, _ := provisioned(t)
	ctx := context.Background()
	ds := blob.DatastoreBucketPrefix + "fast"
	for _, b := range []string{"slipway-dsx", "other-ds-fast", "slipway-d"} {
		if err := svc[schemas.ServiceCatalog].Client().MakeBucket(ctx, b, minio.MakeBucketOptions{}); !blob.IsDenied(err) {
			t.Errorf("the catalog could make bucket %s: %v, want AccessDenied", b, err)
		}
	}
	if err := svc[schemas.ServiceCatalog].EnsureBucket(ctx, ds); err != nil {
		t.Fatalf("the catalog cannot make a created datastore's bucket: %v", err)
	}
	if err := put(t, root, ds, "other/x"); err != nil {
		t.Fatal(err)
	}
	type try struct {
		svc, what string
		do        func(st *blob.Store) error
	}
	allowed := []try{
		{schemas.ServiceCatalog, "write an image blob", func(st *blob.Store) error { return put(t, st, ds, "images/1/s/disk") }},
		{schemas.ServiceConverter, "write an image blob", func(st *blob.Store) error { return put(t, st, ds, "images/2/s/disk") }},
		{schemas.ServiceBuilder, "write an image blob", func(st *blob.Store) error { return put(t, st, ds, "images/3/s/disk") }},
		{schemas.ServiceCryptoLUKS, "write an image blob", func(st *blob.Store) error { return put(t, st, ds, "images/4/s/disk") }},
		{schemas.ServiceLauncher, "read an image blob", func(st *blob.Store) error { _, err := get(st, ds, "images/1/s/disk"); return err }},
		{schemas.ServiceKernelRegistry, "read an image blob", func(st *blob.Store) error { _, err := get(st, ds, "images/2/s/disk"); return err }},
		{schemas.ServiceMarketLxc, "read an image blob", func(st *blob.Store) error { _, err := get(st, ds, "images/3/s/disk"); return err }},
		{schemas.ServiceCatalog, "delete an image's blobs", func(st *blob.Store) error { return st.DeletePrefix(ctx, ds, "images/4/") }},
	}
	for _, tc := range allowed {
		if err := tc.do(svc[tc.svc]); err != nil {
			t.Errorf("%s cannot %s in %s: %v", tc.svc, tc.what, ds, err)
		}
	}
	denied := []try{
		{schemas.ServiceCatalog, "write outside images/", func(st *blob.Store) error { return put(t, st, ds, "other/y") }},
		{schemas.ServiceConverter, "delete outside images/", func(st *blob.Store) error { return st.Delete(ctx, ds, "other/x") }},
		{schemas.ServiceLauncher, "write an image blob", func(st *blob.Store) error { return put(t, st, ds, "images/9/s/disk") }},
		{schemas.ServiceMarketLxc, "delete an image blob", func(st *blob.Store) error { return st.Delete(ctx, ds, "images/1/s/disk") }},
		{schemas.ServiceKernelRegistry, "read outside images/", func(st *blob.Store) error { _, err := get(st, ds, "other/x"); return err }},
	}
	for _, tc := range denied {
		if err := tc.do(svc[tc.svc]); !blob.IsDenied(err) {
			t.Errorf("%s could %s in %s: %v, want AccessDenied", tc.svc, tc.what, ds, err)
		}
	}
	for _, p := range []string{"", "*", "slipway", "slipway-*-", "a/b-", "Slipway-", "-ds-", `x"-`, "slipway-ds"} {
		if r, err := s3iam.BucketsARN(p); err == nil {
			t.Errorf("BucketsARN(%q) = %s, want an error", p, r)
		}
	}
	if r, err := s3iam.PrefixedObjectsARN(blob.DatastoreBucketPrefix, "images"); err != nil || r != "arn:aws:s3:::slipway-ds-*/images/*" {
		t.Errorf("PrefixedObjectsARN = %s, %v", r, err)
	}
}
