package catalog

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/s3iam"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// withOwnS3Identity restarts h's catalog with a MinIO user of its own,
// provisioned for h's buckets (what `slipway up` and `slipway s3
// provision` do), instead of the root keys.
func (h *harness) withOwnS3Identity() {
	h.t.Helper()
	h.stop()
	l := s3iam.Layout{Locations: h.cfg.locations(), FilesBucket: h.cfg.Datastores[1].Bucket}
	keys, err := s3iam.Provision(h.ctx, s3.BlobConfig(), l, []string{ServiceName}, h.t.TempDir())
	if err != nil {
		h.t.Fatalf("provision: %v", err)
	}
	if h.blobs, err = blob.New(s3.BlobConfig().WithKeys(keys[ServiceName])); err != nil {
		h.t.Fatal(err)
	}
	h.start()
}

// importAs has b create an image from a staged object of theirs and the
// converter store data as its blob.
func (h *harness) importAs(b *bus.Bus, name, staged string, data []byte) schemas.Image {
	h.t.Helper()
	img, err := answerFrom[schemas.Image](h, b, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: name, Path: staged, Staged: true, Format: schemas.DiskFormatRaw}, schemas.EventCatalogImageCreated)
	if err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	cmd, c := h.convertCommand(img.ID)
	h.convert(cmd, c, data, schemas.DiskFormatRaw)
	h.waitState(img.ID, StateReady)
	return h.mustShow(img.ID)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func tempStore(t *testing.T, c schemas.S3TemporaryCredentials) *blob.Store {
	t.Helper()
	st, err := blob.New(blob.Config{Endpoint: c.Endpoint, Region: c.Region, AccessKey: c.AccessKey, SecretKey: c.SecretKey, SessionToken: c.SessionToken})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func readAll(st *blob.Store, bucket, key string) (string, error) {
	return testenv.ReadObject(context.Background(), st, bucket, key)
}

// TestUsersReachBlobsOnlyThroughScopedGrants: users hold no service key.
// Bob reads his image's blob through a presigned URL and through
// temporary keys that read that one object; alice is refused both for
// his 600 image, and gets a working URL once bob chmods it 604; upload
// keys write only under the asker's own prefix, and the catalog accepts a
// staged path only there.
func TestUsersReachBlobsOnlyThroughScopedGrants(t *testing.T) {
	h := newHarness(t)
	h.withOwnS3Identity()
	alice := h.newUser("alice", "")
	bob := h.newUser("bob", "")
	up := h.cfg.UploadBucket

	// bob stages with his upload keys and imports twice.
	bobUp, err := bus.Ask(h.ctx, bob, schemas.QryCatalogUploadCreds, schemas.CatalogUploadCredsRequest{})
	if err != nil {
		t.Fatalf("bob's upload keys: %v", err)
	}
	if bobUp.Bucket != up || len(bobUp.Prefixes) != 2 || bobUp.Prefixes[0] != "uploads/bob/" || bobUp.SessionToken == "" {
		t.Fatalf("bob's upload keys: %+v", bobUp)
	}
	bobStore := tempStore(t, bobUp)
	for _, k := range []string{"uploads/bob/a/disk.raw", "uploads/bob/b/disk.raw"} {
		if _, err := bobStore.Put(h.ctx, up, k, strings.NewReader("staged"), 6); err != nil {
			t.Fatalf("bob stages %s: %v", k, err)
		}
	}
	if _, err := bobStore.Put(h.ctx, up, "uploads/alice/x/disk.raw", strings.NewReader("evil"), 4); !blob.IsDenied(err) {
		t.Errorf("bob's upload keys wrote under alice's prefix: %v, want AccessDenied", err)
	}
	a := h.importAs(bob, "bob-a", blob.URL(up, "uploads/bob/a/disk.raw"), []byte("bob's disk A"))
	b := h.importAs(bob, "bob-b", blob.URL(up, "uploads/bob/b/disk.raw"), []byte("bob's disk B"))

	// alice may not stage under bob's prefix, nor consume his upload.
	aliceUp, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadCreds, schemas.CatalogUploadCredsRequest{DurationS: 900})
	if err != nil {
		t.Fatalf("alice's upload keys: %v", err)
	}
	aliceStore := tempStore(t, aliceUp)
	if _, err := aliceStore.Put(h.ctx, up, "uploads/bob/c/disk.raw", strings.NewReader("evil"), 4); !blob.IsDenied(err) {
		t.Errorf("alice wrote under bob's prefix: %v, want AccessDenied", err)
	}
	h.put(blob.URL(up, "uploads/bob/c/disk.raw"), []byte("bob's staged file"))
	if _, err := answerFrom[schemas.Image](h, alice, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "stolen", Path: blob.URL(up, "uploads/bob/c/disk.raw"), Staged: true}, schemas.EventCatalogImageCreated); err == nil ||
		!strings.Contains(err.Error(), "alice stages only s3://"+up+"/uploads/alice/<id>/<file>") {
		t.Errorf("alice imports bob's staged upload: %v, want a refusal naming her prefix", err)
	}
	if !h.exists(blob.URL(up, "uploads/bob/c/disk.raw")) {
		t.Error("alice's refused import deleted bob's upload")
	}
	// Upload keys read nothing, bob's blob included.
	bucket, keyA, _ := blob.ParseURL(a.Source)
	if _, err := readAll(aliceStore, bucket, keyA); !blob.IsDenied(err) {
		t.Errorf("alice's upload keys read bob's blob: %v, want AccessDenied", err)
	}

	// bob: a URL and keys for A read A, and the keys do not read B.
	u, err := bus.Ask(h.ctx, bob, schemas.QryCatalogBlobURL, schemas.CatalogBlobURLRequest{ID: a.ID, ExpiresS: 120})
	if err != nil {
		t.Fatalf("bob's URL: %v", err)
	}
	if code, body := httpGet(t, u.URL); code != http.StatusOK || body != "bob's disk A" {
		t.Errorf("GET bob's URL: %d %q", code, body)
	}
	creds, err := bus.Ask(h.ctx, bob, schemas.QryCatalogBlobCreds, schemas.CatalogBlobCredsRequest{ID: a.ID})
	if err != nil {
		t.Fatalf("bob's keys for A: %v", err)
	}
	if creds.Bucket != bucket || creds.Key != keyA {
		t.Errorf("keys for A name s3://%s/%s, want %s", creds.Bucket, creds.Key, a.Source)
	}
	one := tempStore(t, creds)
	if got, err := readAll(one, bucket, keyA); err != nil || got != "bob's disk A" {
		t.Errorf("keys for A read A: %q, %v", got, err)
	}
	bucketB, keyB, _ := blob.ParseURL(b.Source)
	if _, err := readAll(one, bucketB, keyB); !blob.IsDenied(err) {
		t.Errorf("keys for image A read image B: %v, want AccessDenied", err)
	}
	// The URL is for A alone: the same signature on B's path fails.
	if code, _ := httpGet(t, strings.Replace(u.URL, keyA, keyB, 1)); code != http.StatusForbidden {
		t.Errorf("A's signature on B's path: %d, want 403", code)
	}

	// alice: neither a URL nor keys for bob's 600 image.
	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogBlobURL, schemas.CatalogBlobURLRequest{ID: a.ID}); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("alice's URL for bob's image: %v, want forbidden", err)
	}
	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogBlobCreds, schemas.CatalogBlobCredsRequest{ID: a.ID}); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("alice's keys for bob's image: %v, want forbidden", err)
	}
	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogBlobURL, schemas.CatalogBlobURLRequest{ID: 999}); !bus.IsNotFound(err) {
		t.Errorf("URL of a missing image: %v, want 404", err)
	}

	// bob opens A for use (604): alice's URL works, still only for A.
	if err := h.as(bob, schemas.CommandCatalogImageChmod, schemas.ImageChmod{ID: a.ID, Permissions: "604"}, schemas.EventCatalogImageUpdated); err != nil {
		t.Fatal(err)
	}
	u, err = bus.Ask(h.ctx, alice, schemas.QryCatalogBlobURL, schemas.CatalogBlobURLRequest{ID: a.ID})
	if err != nil {
		t.Fatalf("alice's URL after chmod 604: %v", err)
	}
	if code, body := httpGet(t, u.URL); code != http.StatusOK || body != "bob's disk A" {
		t.Errorf("GET alice's URL: %d %q", code, body)
	}
	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogBlobCreds, schemas.CatalogBlobCredsRequest{ID: b.ID}); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("alice's keys for bob's other (600) image: %v, want forbidden", err)
	}
}
