package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
)

// One MinIO serves the whole package: starting one per test costs a second
// or more each on a busy machine.
var shared testenv.S3

func TestMain(m *testing.M) { os.Exit(testenv.RunWithMinIO(m, "blob", &shared)) }

const testPart = 5 << 20 // the S3 minimum, so multipart paths run on small data

// newStore returns a Store on the shared MinIO and a fresh bucket.
func newStore(t testing.TB) (*blob.Store, string) {
	t.Helper()
	return newStoreVia(t, shared, 0)
}

// newStoreVia returns a Store on s3 (the shared MinIO, or a proxy before
// it) with small parts and inFlight parts in flight (0: the default), and
// a fresh bucket.
func newStoreVia(t testing.TB, s3 testenv.S3, inFlight int) (*blob.Store, string) {
	t.Helper()
	cfg := s3.BlobConfig()
	cfg.PartSize = testPart
	cfg.PartsInFlight = inFlight
	s, err := blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bucket := fmt.Sprintf("t-%d-%d", time.Now().UnixNano(), rand.IntN(1e6))
	if err := s.EnsureBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	return s, bucket
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// onlyReader hides every interface but io.Reader, as a pipe would.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestPutRoundTrip(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	sizes := []int{0, 1, 1000, testPart - 1, testPart, testPart + 1, 3*testPart + 12345}
	for _, n := range sizes {
		for _, known := range []bool{true, false} {
			t.Run(fmt.Sprintf("size=%d/known=%v", n, known), func(t *testing.T) {
				data := randomBytes(n, uint64(n))
				key := fmt.Sprintf("rt/%d-%v", n, known)
				size := int64(-1)
				if known {
					size = int64(n)
				}
				var lastProgress int64
				info, err := s.Put(ctx, bucket, key, onlyReader{bytes.NewReader(data)}, size,
					blob.ContentType("application/octet-stream"),
					blob.Progress(func(d int64) {
						if d < lastProgress {
							t.Errorf("progress went back from %d to %d", lastProgress, d)
						}
						lastProgress = d
					}))
				if err != nil {
					t.Fatal(err)
				}
				if info.Size != int64(n) || info.SHA256 != sum(data) || info.Bucket != bucket || info.Key != key {
					t.Fatalf("info = %+v, want size %d sha %s", info, n, sum(data))
				}
				if n > 0 && lastProgress != int64(n) {
					t.Errorf("last progress = %d, want %d", lastProgress, n)
				}
				rc, gotSize, err := s.Get(ctx, bucket, key)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				if gotSize != int64(n) || !bytes.Equal(got, data) {
					t.Fatalf("Get: size %d, %d bytes, equal=%v; want %d", gotSize, len(got), bytes.Equal(got, data), n)
				}
				h, hn, err := s.SHA256(ctx, bucket, key)
				if err != nil || h != sum(data) || hn != int64(n) {
					t.Fatalf("SHA256 = %s, %d, %v; want %s, %d", h, hn, err, sum(data), n)
				}
				st, err := s.Stat(ctx, bucket, key)
				if err != nil || st.Size != int64(n) || st.ETag == "" || st.ContentType != "application/octet-stream" {
					t.Fatalf("Stat = %+v, %v", st, err)
				}
			})
		}
	}
	assertNoIncomplete(t, s, bucket)
}

func TestPutExpectSHA256(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	for _, n := range []int{100, 2*testPart + 7} {
		data := randomBytes(n, 7)
		key := fmt.Sprintf("sha/%d", n)
		if _, err := s.Put(ctx, bucket, key, bytes.NewReader(data), -1, blob.ExpectSHA256("sha256:"+sum(data))); err != nil {
			t.Fatalf("matching digest rejected: %v", err)
		}
		if err := s.Delete(ctx, bucket, key); err != nil {
			t.Fatal(err)
		}
		wrong := sum([]byte("something else"))
		_, err := s.Put(ctx, bucket, key, bytes.NewReader(data), int64(n), blob.ExpectSHA256(wrong))
		if err == nil {
			t.Fatalf("size %d: wrong digest accepted", n)
		}
		if !strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), sum(data)) {
			t.Errorf("error %q does not name both digests", err)
		}
		if _, err := s.Stat(ctx, bucket, key); !blob.IsNotFound(err) {
			t.Fatalf("size %d: object left after digest mismatch (stat err %v)", n, err)
		}
	}
	if _, err := s.Put(ctx, bucket, "bad", strings.NewReader("x"), 1, blob.ExpectSHA256("abc")); err == nil {
		t.Fatal("malformed expected digest accepted")
	}
	assertNoIncomplete(t, s, bucket)
}

// failingReader returns data, then err after limit bytes.
type failingReader struct {
	r     io.Reader
	limit int64
	err   error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.limit <= 0 {
		return 0, f.err
	}
	if int64(len(p)) > f.limit {
		p = p[:f.limit]
	}
	n, err := f.r.Read(p)
	f.limit -= int64(n)
	return n, err
}

func TestPutFailingReaderLeavesNothing(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	boom := errors.New("disk on fire")
	for _, failAt := range []int64{10, 2*testPart + 10} {
		for _, size := range []int64{-1, 4 * testPart} {
			key := fmt.Sprintf("fail/%d/%d", failAt, size)
			r := &failingReader{r: bytes.NewReader(randomBytes(4*testPart, 3)), limit: failAt, err: boom}
			_, err := s.Put(ctx, bucket, key, r, size)
			if !errors.Is(err, boom) {
				t.Fatalf("fail at %d, size %d: err = %v, want %v", failAt, size, err, boom)
			}
			if _, err := s.Stat(ctx, bucket, key); !blob.IsNotFound(err) {
				t.Fatalf("object left after a failed Put (stat err %v)", err)
			}
		}
	}
	// A short stream of declared size fails the same way.
	_, err := s.Put(ctx, bucket, "short", bytes.NewReader(randomBytes(2*testPart, 1)), 3*testPart)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short stream: err = %v", err)
	}
	if _, err := s.Stat(ctx, bucket, "short"); !blob.IsNotFound(err) {
		t.Fatalf("object left after a short stream (stat err %v)", err)
	}
	assertNoIncomplete(t, s, bucket)
}

func TestPutCancelledContextLeavesNothing(t *testing.T) {
	s, bucket := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		data := randomBytes(testPart, 9)
		for range 2 {
			if _, err := pw.Write(data); err != nil {
				return
			}
		}
		cancel() // two parts are through: cancel mid-upload
		for {
			if _, err := pw.Write(data); err != nil {
				return
			}
		}
	}()
	_, err := s.Put(ctx, bucket, "cancelled", pr, -1)
	pr.CloseWithError(errors.New("test over"))
	if err == nil {
		t.Fatal("Put succeeded despite a cancelled context")
	}
	if _, err := s.Stat(context.Background(), bucket, "cancelled"); !blob.IsNotFound(err) {
		t.Fatalf("object left after cancel (stat err %v)", err)
	}
	assertNoIncomplete(t, s, bucket)
}

func assertNoIncomplete(t *testing.T, s *blob.Store, bucket string) {
	t.Helper()
	for u := range s.Client().ListIncompleteUploads(context.Background(), bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		t.Errorf("incomplete multipart upload left: key %q id %s", u.Key, u.UploadID)
	}
}

func TestDeleteAndNotFound(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, bucket, "a/1", strings.NewReader("one"), 3); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := s.Delete(ctx, bucket, "a/1"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if err := s.Delete(ctx, "no-such-bucket-slipway", "x"); err != nil {
		t.Fatalf("Delete in a missing bucket: %v", err)
	}
	_, err := s.Stat(ctx, bucket, "a/1")
	if !blob.IsNotFound(err) || !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat of deleted object: %v, want not found", err)
	}
	if _, _, err := s.Get(ctx, bucket, "a/1"); !blob.IsNotFound(err) {
		t.Fatalf("Get of deleted object: %v, want not found", err)
	}
	if _, err := s.GetRange(ctx, bucket, "a/1", 1); !blob.IsNotFound(err) {
		t.Fatalf("GetRange of deleted object: %v, want not found", err)
	}
	if blob.IsNotFound(errors.New("other")) || blob.IsNotFound(nil) {
		t.Fatal("IsNotFound true for an unrelated error")
	}
}

func TestListDeletePrefixGetRange(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	for _, k := range []string{"img/1/disk.qcow2", "img/1/meta", "img/2/disk.raw", "other"} {
		if _, err := s.Put(ctx, bucket, k, strings.NewReader("content of "+k), -1); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := s.List(ctx, bucket, "img/")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(keys, ","), "img/1/disk.qcow2,img/1/meta,img/2/disk.raw"; got != want {
		t.Fatalf("List = %s, want %s", got, want)
	}
	rc, err := s.GetRange(ctx, bucket, "img/1/meta", int64(len("content of ")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "img/1/meta" {
		t.Fatalf("GetRange = %q", b)
	}
	// An upload left incomplete under the prefix is aborted too.
	core := minio.Core{Client: s.Client()}
	if _, err := core.NewMultipartUpload(ctx, bucket, "img/1/partial", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePrefix(ctx, bucket, "img/1/"); err != nil {
		t.Fatal(err)
	}
	keys, err = s.List(ctx, bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(keys, ","), "img/2/disk.raw,other"; got != want {
		t.Fatalf("after DeletePrefix: %s, want %s", got, want)
	}
	assertNoIncomplete(t, s, bucket)
}

func TestEnsureBucketConcurrent(t *testing.T) {
	s, _ := newStore(t)
	bucket := fmt.Sprintf("race-%d", time.Now().UnixNano())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.EnsureBucket(context.Background(), bucket)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent EnsureBucket: %v", err)
		}
	}
	if ok, err := s.Client().BucketExists(context.Background(), bucket); err != nil || !ok {
		t.Fatalf("bucket %s missing: %v", bucket, err)
	}
}

func TestPresign(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	data := randomBytes(4096, 5)
	put, err := s.PresignPut(ctx, bucket, "pre/x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, put.String(), bytes.NewReader(data))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned PUT: %s", resp.Status)
	}
	get, err := s.PresignGet(ctx, bucket, "pre/x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(get.String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("presigned GET: %s, %d bytes, equal=%v", resp.Status, len(got), bytes.Equal(got, data))
	}
	// Tampering with the signature must be refused.
	q := get.Query()
	q.Set("X-Amz-Signature", strings.Repeat("0", 64))
	get.RawQuery = q.Encode()
	resp, err = http.Get(get.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("tampered presigned GET: %s, want 403", resp.Status)
	}
}

func TestDeleteURL(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	info, err := s.Put(ctx, bucket, "u/1", strings.NewReader("one"), 3)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a missing object is not an error
		if err := s.DeleteURL(ctx, info.URL()); err != nil {
			t.Fatalf("DeleteURL: %v", err)
		}
	}
	if _, err := s.Stat(ctx, bucket, "u/1"); !blob.IsNotFound(err) {
		t.Fatalf("object still there: %v", err)
	}
	if err := s.DeleteURL(ctx, "https://example.invalid/x"); err == nil {
		t.Fatal("a non-s3 URL was accepted")
	}
}

func TestPutFile(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	data := randomBytes(testPart+777, 11)
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var begun, last, total int64
	info, err := s.PutFile(ctx, bucket, "f/1", path, func(size int64) error { begun = size; return nil },
		func(done, size int64) { last, total = done, size })
	if err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	n := int64(len(data))
	if info.Size != n || info.SHA256 != sum(data) || begun != n || last != n || total != n {
		t.Fatalf("PutFile = %+v, begin %d, last progress %d/%d; want size %d and sha %s everywhere", info, begun, last, total, n, sum(data))
	}
	refused := errors.New("refused")
	if _, err := s.PutFile(ctx, bucket, "f/2", path, func(int64) error { return refused }, nil); !errors.Is(err, refused) {
		t.Fatalf("PutFile with a refusing begin = %v, want %v", err, refused)
	}
	if _, err := s.Stat(ctx, bucket, "f/2"); !blob.IsNotFound(err) {
		t.Fatalf("a refused PutFile stored something: %v", err)
	}
	if _, err := s.PutFile(ctx, bucket, "f/3", filepath.Join(t.TempDir(), "missing"), nil, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("PutFile of a missing file = %v, want not exist", err)
	}
}

// TestObjectsDescribesWhatIsListed: Objects yields every object under the
// prefix with its size and time, nothing outside it, and stops when the
// caller does.
func TestObjectsDescribesWhatIsListed(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	before := time.Now().Add(-time.Minute)
	for key, data := range map[string]string{"p/a": "one", "p/b/c": "three", "q/d": "outside"} {
		if _, err := s.Put(ctx, bucket, key, strings.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for o, err := range s.Objects(ctx, bucket, "p/") {
		if err != nil {
			t.Fatal(err)
		}
		if o.Bucket != bucket || o.LastModified.Before(before) || o.LastModified.After(time.Now().Add(time.Minute)) {
			t.Errorf("object %+v: wrong bucket or time", o)
		}
		got = append(got, fmt.Sprintf("%s:%d", o.Key, o.Size))
	}
	if want := "p/a:3 p/b/c:5"; strings.Join(got, " ") != want {
		t.Errorf("listed %q, want %q", got, want)
	}
	n := 0
	for range s.Objects(ctx, bucket, "") {
		n++
		break
	}
	if n != 1 {
		t.Errorf("a caller that stops after one saw %d", n)
	}
	var errs []error
	for _, err := range s.Objects(ctx, "no-such-bucket-"+strings.ToLower(t.Name()), "") {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !blob.IsNotFound(errs[0]) {
		t.Errorf("listing a missing bucket: %v, want one not found", errs)
	}
}
