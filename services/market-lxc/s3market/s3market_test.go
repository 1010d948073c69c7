package s3market

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/services/market-lxc/httpmarket"
	"github.com/slipway/slipway/services/market-lxc/published"
	"github.com/slipway/slipway/services/market-lxc/published/publishedtest"
)

var shared testenv.S3

func TestMain(m *testing.M) { os.Exit(testenv.RunWithMinIO(m, "s3market", &shared)) }

// testPart is the S3 minimum part size, so that a blob of a few MiB
// takes the multipart path.
const testPart = 5 << 20

func newStore(t *testing.T) *blob.Store {
	t.Helper()
	cfg := shared.BlobConfig()
	cfg.PartSize = testPart
	s, err := blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newMarket is a Market in a fresh bucket below a prefix.
func newMarket(t *testing.T, totalMB int64) (*Market, string) {
	t.Helper()
	s := newStore(t)
	bucket := "market-" + testenv.Unique()
	if err := s.EnsureBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	m, err := New(s, bucket, "markets/private-1/", totalMB)
	if err != nil {
		t.Fatal(err)
	}
	return m, bucket
}

func app(name string, data []byte) published.App { return publishedtest.App(name, "raw", data) }

// TestSuite runs the behaviour both private marketplaces share on a
// bucket of a real MinIO.
func TestSuite(t *testing.T) {
	publishedtest.Suite(t, "raw", testPart+12345, func(t *testing.T) publishedtest.Instance {
		m, bucket := newMarket(t, 0)
		// Another store and another client, as a second process.
		other, err := New(newStore(t), bucket, m.prefix, 0)
		if err != nil {
			t.Fatal(err)
		}
		l, err := NewLister(newStore(t), bucket, m.prefix)
		if err != nil {
			t.Fatal(err)
		}
		return publishedtest.Instance{
			Pub: m, Other: other, Lister: l,
			Stored: func(t *testing.T) []string { return stored(t, m) },
			BlobURL: func(a published.App) string {
				return "s3://" + bucket + "/markets/private-1/apps/" + a.Name + "/disk." + a.Format
			},
		}
	})
	t.Logf("%d index writes were refused and retried", indexConflicts.Load())
}

// stored lists the keys under the market's prefix, relative to it, and
// fails on an incomplete multipart upload left in the bucket.
func stored(t *testing.T, m *Market) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := m.store.List(ctx, m.bucket, m.prefix)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		keys[i] = strings.TrimPrefix(k, m.prefix)
	}
	for u := range m.client().ListIncompleteUploads(ctx, m.bucket, "", true) {
		t.Errorf("incomplete upload left: %+v", u)
	}
	return keys
}

// TestPublishCopy publishes a blob already in the store (a catalog
// image) by a server-side copy, verified before it is listed.
func TestPublishCopy(t *testing.T) {
	ctx := context.Background()
	m, _ := newMarket(t, 0)
	src := "images-" + testenv.Unique()
	if err := m.store.EnsureBucket(ctx, src); err != nil {
		t.Fatal(err)
	}
	data := publishedtest.Payload("image", testPart+99)
	if _, err := m.store.Put(ctx, src, "images/7/disk.raw", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	wrong := app("copied", data)
	wrong.SHA256 = publishedtest.SHA256([]byte("not it"))
	if _, err := m.PublishCopy(ctx, wrong, src, "images/7/disk.raw"); err == nil || !strings.Contains(err.Error(), "SHA-256 mismatch") {
		t.Fatalf("copy with a wrong sha256: %v", err)
	}
	if left := stored(t, m); len(left) != 0 {
		t.Fatalf("left after a refused copy: %v", left)
	}
	if _, err := m.PublishCopy(ctx, app("copied", data), src, "images/7/missing"); err == nil {
		t.Fatal("published a copy of a missing object")
	}
	a, err := m.PublishCopy(ctx, app("copied", data), src, "images/7/disk.raw")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := m.List(ctx)
	if err != nil || len(entries) != 1 || entries[0].App != a {
		t.Fatalf("listed %+v, %v", entries, err)
	}
	if got := publishedtest.ReadApp(t, m, a); !bytes.Equal(got, data) {
		t.Fatal("the copied blob differs from the source")
	}
}

// TestConditionalWritesAreHonoured checks what the index update relies
// on: MinIO refuses a PUT whose If-Match names an ETag the object no
// longer has, and one with If-None-Match: * when the object exists.
func TestConditionalWritesAreHonoured(t *testing.T) {
	ctx := context.Background()
	m, _ := newMarket(t, 0)
	put := func(opts minio.PutObjectOptions, body string) error {
		_, err := m.client().PutObject(ctx, m.bucket, "markets/private-1/x", strings.NewReader(body), int64(len(body)), opts)
		return err
	}
	create := jsonPut()
	create.SetMatchETagExcept("*")
	if err := put(create, "one"); err != nil {
		t.Fatal(err)
	}
	if err := put(create, "two"); !isConflict(err) {
		t.Fatalf("If-None-Match: * over an existing object: %v, want a conflict", err)
	}
	_, first, _, err := minio.Core{Client: m.client()}.GetObject(ctx, m.bucket, "markets/private-1/x", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := put(jsonPut(), "changed"); err != nil {
		t.Fatal(err)
	}
	stale := jsonPut()
	stale.SetMatchETag(first.ETag)
	if err := put(stale, "lost update"); !isConflict(err) {
		t.Fatalf("If-Match with a stale ETag: %v, want a conflict", err)
	}
}

func TestListerRefusesHostileIndex(t *testing.T) {
	ctx := context.Background()
	m, _ := newMarket(t, 0)
	cases := publishedtest.HostileIndexes()
	key := m.key(published.IndexFile)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if _, err := m.store.Put(ctx, m.bucket, key, strings.NewReader(c.Doc), int64(len(c.Doc))); err != nil {
				t.Fatal(err)
			}
			entries, err := m.List(ctx)
			if err == nil {
				t.Fatalf("listed %+v", entries)
			}
			if !strings.Contains(err.Error(), c.Want) {
				t.Fatalf("error %q does not say %q", err, c.Want)
			}
			// A publisher refuses to build on a broken index too.
			data := []byte("abc")
			if _, err := m.Publish(ctx, app("new", data), bytes.NewReader(data)); err == nil {
				t.Fatal("published on top of a hostile index")
			}
		})
	}
}

func TestMonitor(t *testing.T) {
	ctx := context.Background()
	m, _ := newMarket(t, 100)
	data := publishedtest.Payload("m", 5<<20+1)
	if _, err := m.Publish(ctx, app("m", data), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	u, err := m.Monitor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 5 MiB + 1 byte of blob and a few KiB of documents: 6 MiB used.
	if u != (published.Usage{UsedMB: 6, FreeMB: 94, TotalMB: 100}) {
		t.Fatalf("with TOTAL_MB=100: %+v", u)
	}
	if err := m.Delete(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if u, _ := m.Monitor(ctx); u != (published.Usage{UsedMB: 1, FreeMB: 99, TotalMB: 100}) {
		t.Fatalf("after delete: %+v, want the index's 1 MiB", u)
	}
	def, _ := newMarket(t, 0)
	if u, err := def.Monitor(ctx); err != nil || u != (published.Usage{UsedMB: 0, FreeMB: DefaultTotalMB, TotalMB: DefaultTotalMB}) {
		t.Fatalf("empty market, no TOTAL_MB: %+v, %v", u, err)
	}
}

// TestPublicBucketOverHTTP reads an S3 marketplace whose objects are
// readable anonymously with httpmarket's Lister: plain HTTP, no keys.
func TestPublicBucketOverHTTP(t *testing.T) {
	ctx := context.Background()
	m, bucket := newMarket(t, 0)
	data := publishedtest.Payload("pub", 9000)
	if _, err := m.Publish(ctx, app("pub", data), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::%s/markets/private-1/*"]}]}`, bucket)
	if err := m.client().SetBucketPolicy(ctx, bucket, policy); err != nil {
		t.Fatal(err)
	}
	l, err := httpmarket.NewLister("http://"+shared.Endpoint+"/"+bucket+"/markets/private-1/", &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := l.List(ctx)
	if err != nil || len(entries) != 1 {
		t.Fatalf("listed %+v, %v", entries, err)
	}
	if want := "http://" + shared.Endpoint + "/" + bucket + "/markets/private-1/apps/pub/disk.raw"; entries[0].BlobURL != want {
		t.Fatalf("blob URL %s, want %s", entries[0].BlobURL, want)
	}
	if got := publishedtest.ReadApp(t, l, entries[0].App); !bytes.Equal(got, data) {
		t.Fatal("blob read over HTTP differs")
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, p := range []string{"", "m/", "markets/private-1/"} {
		if err := CheckPrefix(p); err != nil {
			t.Errorf("CheckPrefix(%q): %v", p, err)
		}
	}
	for _, p := range []string{"m", "/m/", "../m/", "a//b/", "a/../b/", "a b/"} {
		if err := CheckPrefix(p); err == nil {
			t.Errorf("CheckPrefix(%q) accepted", p)
		}
	}
}
