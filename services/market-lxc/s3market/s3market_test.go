package s3market

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/services/market-lxc/httpmarket"
	"github.com/slipway/slipway/services/market-lxc/published"
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

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func payload(seed string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed[i%len(seed)]
	}
	return b
}

func app(name string, data []byte) published.App {
	return published.App{
		Name: name, Version: "1.0", Format: "raw", Size: int64(len(data)), SHA256: sum(data),
		Description: "test app " + name, Publisher: "Slipway tests", VMTemplate: "CPU = 1\nMEMORY = 256\n",
	}
}

// objects lists the keys under the market's prefix.
func objects(t *testing.T, m *Market) []string {
	t.Helper()
	keys, err := m.store.List(context.Background(), m.bucket, m.prefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// readApp reads a's blob through o's Open to its end.
func readApp(t *testing.T, o interface {
	Open(context.Context, published.App) (io.ReadCloser, error)
}, a published.App) []byte {
	t.Helper()
	rc, err := o.Open(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublishListDownload(t *testing.T) {
	ctx := context.Background()
	m, bucket := newMarket(t, 0)
	// One blob larger than a part goes up as a multipart upload.
	blobs := map[string][]byte{"alpine-3.20": payload("alpine", testPart+12345), "debian-12": payload("debian", 80000)}
	for name, data := range blobs {
		if _, err := m.Publish(ctx, app(name, data), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	// A second lister with a store of its own, as another Slipway.
	l, err := NewLister(newStore(t), bucket, "markets/private-1/")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name != "alpine-3.20" || entries[1].Name != "debian-12" {
		t.Fatalf("listed %+v", entries)
	}
	for _, e := range entries {
		want := blobs[e.Name]
		key := "markets/private-1/apps/" + e.Name + "/disk.raw"
		if e.BlobURL != blob.URL(bucket, key) || e.SHA256 != sum(want) || e.Size != int64(len(want)) || e.VMTemplate == "" {
			t.Fatalf("entry %+v", e)
		}
		got := readApp(t, l, e.App)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read %d bytes back, want %d", e.Name, len(got), len(want))
		}
		stored, n, err := l.store.SHA256(ctx, bucket, key)
		if err != nil || stored != e.SHA256 || n != e.Size {
			t.Fatalf("%s stored as %s (%d bytes), %v", key, stored, n, err)
		}
		rc, _, err := l.store.Get(ctx, bucket, "markets/private-1/"+published.MetaPath(e.Name))
		if err != nil {
			t.Fatal(err)
		}
		meta, err := published.DecodeMeta(rc)
		rc.Close()
		if err != nil || meta != e.App {
			t.Fatalf("metadata of %s: %+v, %v", e.Name, meta, err)
		}
	}
	data := blobs["debian-12"]
	if _, err := m.Publish(ctx, app("debian-12", data), bytes.NewReader(data)); !errors.Is(err, published.ErrExists) {
		t.Fatalf("republishing debian-12: %v, want ErrExists", err)
	}
}

func TestWrongSHA256LeavesNothing(t *testing.T) {
	ctx := context.Background()
	m, _ := newMarket(t, 0)
	for _, size := range []int{1000, testPart + 1000} { // single PUT and multipart
		data := payload("x", size)
		wrong := app("bad-"+strconv.Itoa(size), data)
		wrong.SHA256 = sum([]byte("other"))
		_, err := m.Publish(ctx, wrong, bytes.NewReader(data))
		if err == nil || !strings.Contains(err.Error(), "SHA-256 mismatch: expected "+wrong.SHA256+", got "+sum(data)) {
			t.Fatalf("%d bytes with a wrong sha256: %v", size, err)
		}
	}
	data := payload("y", 1000)
	if _, err := m.Publish(ctx, app("long", data[:900]), bytes.NewReader(data)); err == nil {
		t.Fatal("a blob longer than declared was published")
	}
	if keys := objects(t, m); len(keys) != 0 {
		t.Fatalf("objects left after refused publishes: %v", keys)
	}
	for u := range m.client().ListIncompleteUploads(ctx, m.bucket, "", true) {
		t.Fatalf("incomplete upload left: %+v", u)
	}
	if entries, err := m.List(ctx); err != nil || len(entries) != 0 {
		t.Fatalf("listed %+v, %v", entries, err)
	}
}

func TestDeleteRemovesObjectsAndEntry(t *testing.T) {
	ctx := context.Background()
	m, _ := newMarket(t, 0)
	for _, n := range []string{"keep", "gone"} {
		data := payload(n, 3000)
		if _, err := m.Publish(ctx, app(n, data), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	for _, k := range objects(t, m) {
		if strings.Contains(k, "/gone/") {
			t.Fatalf("object %s left after delete", k)
		}
	}
	entries, err := m.List(ctx)
	if err != nil || len(entries) != 1 || entries[0].Name != "keep" {
		t.Fatalf("after delete: %+v, %v", entries, err)
	}
	if err := m.Delete(ctx, "gone"); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
	if err := m.Delete(ctx, "../keep"); err == nil {
		t.Fatal("Delete accepted ../keep")
	}
}

func TestConcurrentPublishesKeepEveryEntry(t *testing.T) {
	ctx := context.Background()
	m, bucket := newMarket(t, 0)
	// Half the publishers have a store of their own, as separate
	// processes would.
	other, err := New(newStore(t), bucket, "markets/private-1/", 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n+2)
	for i := range n {
		wg.Go(func() {
			pub := m
			if i%2 == 1 {
				pub = other
			}
			data := payload(strconv.Itoa(i), 5000+i)
			if _, err := pub.Publish(ctx, app(fmt.Sprintf("app-%02d", i), data), bytes.NewReader(data)); err != nil {
				errs <- err
			}
		})
	}
	// Two publishers of one name: exactly one wins, and its blob is
	// the one stored.
	same := [][]byte{payload("first", 7000), payload("second", 7000)}
	won := make(chan int, 2)
	for i, data := range same {
		wg.Go(func() {
			pub := []*Market{m, other}[i]
			_, err := pub.Publish(ctx, app("contested", data), bytes.NewReader(data))
			switch {
			case err == nil:
				won <- i
			case !errors.Is(err, published.ErrExists):
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	close(won)
	for err := range errs {
		t.Error(err)
	}
	var winners []int
	for i := range won {
		winners = append(winners, i)
	}
	t.Logf("%d index writes were refused and retried", indexConflicts.Load())
	if len(winners) != 1 {
		t.Fatalf("%d publishers of one name succeeded", len(winners))
	}
	entries, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n+1 {
		t.Fatalf("%d entries after %d concurrent publishes of distinct names", len(entries), n+1)
	}
	for i, e := range entries[:n] {
		if e.Name != fmt.Sprintf("app-%02d", i) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	got := readApp(t, m, entries[n].App)
	if entries[n].Name != "contested" || !bytes.Equal(got, same[winners[0]]) {
		t.Fatalf("contested app holds the wrong blob")
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
	entry := func(name, blobPath string) string {
		return fmt.Sprintf(`{"name":%q,"version":"1","format":"raw","size":3,"sha256":"%s","created":"2026-01-01T00:00:00Z","blob":%q}`,
			name, sum([]byte("abc")), blobPath)
	}
	index := func(apps ...string) string { return `{"format_version":1,"apps":[` + strings.Join(apps, ",") + `]}` }
	cases := []struct{ name, doc, want string }{
		{"escaping blob path", index(entry("a", "../../../other-bucket/x")), `must be "apps/a/disk.raw"`},
		{"blob in another bucket", index(entry("a", "s3://other/x")), "must be"},
		{"name with ..", index(entry("a..b", "apps/a..b/disk.raw")), `must not contain ".."`},
		{"wrong types", `{"format_version":1,"apps":[{"name":1}]}`, "name"},
		{"huge", `{"format_version":1,"apps":[],"x":"` + strings.Repeat("a", published.MaxIndexBytes) + `"}`, "larger than"},
	}
	key := m.key(published.IndexFile)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := m.store.Put(ctx, m.bucket, key, strings.NewReader(c.doc), int64(len(c.doc))); err != nil {
				t.Fatal(err)
			}
			entries, err := m.List(ctx)
			if err == nil {
				t.Fatalf("listed %+v", entries)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
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
	data := payload("m", 5<<20+1)
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
	data := payload("pub", 9000)
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
	if got := readApp(t, l, entries[0].App); !bytes.Equal(got, data) {
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
