package blob_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
)

// remoteFixture is the shared MinIO as the default server and a second
// MinIO as the remote "archive", holding slipway-ds-arc-*.
type remoteFixture struct {
	remote testenv.S3
	// store routes; plain and far reach one server each, without remotes.
	store, plain, far *blob.Store
	dir               string
	// defBucket is on the default server, farBucket on the remote.
	defBucket, farBucket string
}

// writeRemotes writes a remotes file of one remote "archive" at
// endpoint, holding slipway-ds-arc-*, with keys k, and returns its path.
func writeRemotes(t *testing.T, dir, endpoint string, k blob.Keys, extra map[string]any) string {
	t.Helper()
	if err := blob.WriteKeys(filepath.Join(dir, "archive.json"), k); err != nil {
		t.Fatal(err)
	}
	r := map[string]any{"name": "archive", "endpoint": "http://" + endpoint, "region": "us-east-1",
		"keys_file": "archive.json", "buckets": []string{"slipway-ds-arc-*"}}
	for k, v := range extra {
		r[k] = v
	}
	b, err := json.Marshal(map[string]any{"remotes": []any{r}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "remotes.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newRemoteFixture(t *testing.T) *remoteFixture {
	t.Helper()
	f := &remoteFixture{remote: testenv.MinIO(t), dir: t.TempDir()}
	path := writeRemotes(t, f.dir, f.remote.Endpoint, blob.Keys{AccessKey: f.remote.AccessKey, SecretKey: f.remote.SecretKey},
		map[string]any{"public_endpoint": "http://localhost:" + strings.Split(f.remote.Endpoint, ":")[1]})
	remotes, err := blob.ReadRemotes(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := shared.BlobConfig()
	cfg.PartSize = testPart
	cfg.Remotes = remotes
	if f.store, err = blob.New(cfg); err != nil {
		t.Fatal(err)
	}
	f.plain, _ = newStore(t)
	farCfg := f.remote.BlobConfig()
	farCfg.PartSize = testPart
	if f.far, err = blob.New(farCfg); err != nil {
		t.Fatal(err)
	}
	u := strings.ToLower(testenv.Unique())
	f.defBucket, f.farBucket = "slipway-ds-def-"+u, "slipway-ds-arc-"+u
	ctx := context.Background()
	for _, b := range []string{f.defBucket, f.farBucket} {
		if err := f.store.EnsureBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// on reports whether the object exists on the default server and on the
// remote, asked of each directly.
func (f *remoteFixture) on(t *testing.T, bucket, key string) (def, far bool) {
	t.Helper()
	ctx := context.Background()
	_, derr := f.plain.Stat(ctx, bucket, key)
	_, ferr := f.far.Stat(ctx, bucket, key)
	for _, err := range []error{derr, ferr} {
		if err != nil && !blob.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	return derr == nil, ferr == nil
}

// TestRemoteRouting: every call on a remote's bucket goes to the remote
// and nowhere else, and a default bucket's to the default server; the
// remote's bucket was made there only.
func TestRemoteRouting(t *testing.T) {
	f := newRemoteFixture(t)
	ctx := context.Background()
	if ok, err := f.far.Client().BucketExists(ctx, f.farBucket); err != nil || !ok {
		t.Fatalf("EnsureBucket of %s did not make it on the remote: %v %v", f.farBucket, ok, err)
	}
	if ok, err := f.plain.Client().BucketExists(ctx, f.farBucket); err != nil || ok {
		t.Fatalf("EnsureBucket of %s made it on the default server too: %v %v", f.farBucket, ok, err)
	}
	for _, n := range []int{100, 2*testPart + 3} {
		data := randomBytes(n, uint64(n))
		for _, b := range []string{f.defBucket, f.farBucket} {
			key := fmt.Sprintf("images/1/%d", n)
			info, err := f.store.Put(ctx, b, key, bytes.NewReader(data), -1, blob.OwnedBy("cmd-1"))
			if err != nil || info.SHA256 != sum(data) {
				t.Fatalf("put %s/%s: %+v %v", b, key, info, err)
			}
			def, far := f.on(t, b, key)
			if def != (b == f.defBucket) || far != (b == f.farBucket) {
				t.Fatalf("%s/%s: on default %v, on remote %v", b, key, def, far)
			}
			if h, size, err := f.store.SHA256(ctx, b, key); err != nil || h != sum(data) || size != int64(n) {
				t.Fatalf("read back %s/%s: %s %d %v", b, key, h, size, err)
			}
			st, err := f.store.Stat(ctx, b, key)
			if err != nil || st.Command != "cmd-1" {
				t.Fatalf("stat %s/%s: %+v %v", b, key, st, err)
			}
			keys, err := f.store.List(ctx, b, "images/")
			if err != nil || len(keys) != 1 {
				t.Fatalf("list %s: %v %v", b, keys, err)
			}
			if ok, err := f.store.DeleteIfOwned(ctx, blob.URL(b, key), "cmd-1"); err != nil || !ok {
				t.Fatalf("delete %s/%s: %v %v", b, key, ok, err)
			}
			if def, far := f.on(t, b, key); def || far {
				t.Fatalf("%s/%s still there after the delete", b, key)
			}
		}
	}
	if r, ok := f.store.RemoteOf(f.farBucket); !ok || r.Name != "archive" || r.Keys != (blob.Keys{}) {
		t.Errorf("RemoteOf(%s) = %+v %v, want archive without keys", f.farBucket, r, ok)
	}
	if _, ok := f.store.RemoteOf(f.defBucket); ok {
		t.Errorf("RemoteOf(%s) names a remote", f.defBucket)
	}
	if got := f.store.ConfigFor(f.farBucket); got.Endpoint != "http://"+f.remote.Endpoint || got.AccessKey != f.remote.AccessKey {
		t.Errorf("ConfigFor(%s) = %s, want the remote's", f.farBucket, got.Endpoint)
	}
	if _, err := f.store.Remote("nowhere"); !errors.Is(err, blob.ErrUnknownRemote) || !strings.Contains(err.Error(), `"nowhere" (remotes: archive)`) {
		t.Errorf("Remote(nowhere): %v", err)
	}
	// An empty bucket is removed where it lives; one with an object stays.
	if _, err := f.store.Put(ctx, f.farBucket, "kept", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := f.store.RemoveEmptyBucket(ctx, f.farBucket); !errors.Is(err, blob.ErrBucketNotEmpty) {
		t.Fatalf("remove of a bucket with an object: %v, want ErrBucketNotEmpty", err)
	}
	if err := f.store.Delete(ctx, f.farBucket, "kept"); err != nil {
		t.Fatal(err)
	}
	if err := f.store.RemoveEmptyBucket(ctx, f.farBucket); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.far.Client().BucketExists(ctx, f.farBucket); err != nil || ok {
		t.Fatalf("bucket %s on the remote after its removal: %v %v", f.farBucket, ok, err)
	}
}

// TestRemoteCopyStreams: a copy between the servers streams (multipart,
// in part-sized buffers: far less memory than the object), both ways,
// keeps the owning command, and replaces the destination.
func TestRemoteCopyStreams(t *testing.T) {
	f := newRemoteFixture(t)
	ctx := context.Background()
	const size = 8*testPart + 77
	data := randomBytes(size, 42)
	if _, err := f.store.Put(ctx, f.defBucket, "src", bytes.NewReader(data), size, blob.OwnedBy("cmd-src")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Put(ctx, f.farBucket, "dst", strings.NewReader("old"), 3); err != nil {
		t.Fatal(err)
	}
	data = nil // only the stores hold it now
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	info, err := f.store.Copy(ctx, f.defBucket, "src", f.farBucket, "dst")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("copy of %d bytes across servers allocated %d bytes", size, allocated)
	if allocated > size/2 {
		t.Errorf("a copy of %d bytes allocated %d: it buffers the object instead of streaming it", size, allocated)
	}
	if info.Size != size || info.Command != "cmd-src" || !strings.Contains(info.ETag, "-") {
		t.Fatalf("copied: %+v, want %d bytes of multipart upload owned by cmd-src", info, size)
	}
	want, _, err := f.plain.SHA256(ctx, f.defBucket, "src")
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := f.far.SHA256(ctx, f.farBucket, "dst"); err != nil || got != want {
		t.Fatalf("copy on the remote: %s %v, want %s", got, err, want)
	}
	// And back, to another key of the default server.
	if _, err := f.store.Copy(ctx, f.farBucket, "dst", f.defBucket, "back"); err != nil {
		t.Fatal(err)
	}
	if got, _, err := f.plain.SHA256(ctx, f.defBucket, "back"); err != nil || got != want {
		t.Fatalf("copy back: %s %v, want %s", got, err, want)
	}
	// A copy within the remote stays server side on the remote, a
	// multipart copy above the limit (lowered here) as one request below.
	restore := blob.SetMaxCopyPart(copyPart)
	again, err := f.store.Copy(ctx, f.farBucket, "dst", f.farBucket, "again")
	restore()
	if err != nil {
		t.Fatal(err)
	}
	if def, far := f.on(t, f.farBucket, "again"); def || !far {
		t.Fatalf("copy within the remote: on default %v, on remote %v", def, far)
	}
	if got, _, err := f.far.SHA256(ctx, f.farBucket, "again"); err != nil || got != want || !strings.HasSuffix(again.ETag, "-6") {
		t.Fatalf("multipart copy within the remote: sha256 %s %v, ETag %s; want %s in 6 parts (8 test parts + 77 bytes in parts of at most 8 MiB)", got, err, again.ETag, want)
	}
	if _, err := f.store.Copy(ctx, f.defBucket, "missing", f.farBucket, "x"); !blob.IsNotFound(err) {
		t.Fatalf("copy of a missing object across servers: %v, want not found", err)
	}
	assertNoIncomplete(t, f.far, f.farBucket)
}

// TestRemotePresign: a presigned GET of a remote's object is signed with
// the remote's keys and answers the object; one of the default server's
// is signed for it.
func TestRemotePresign(t *testing.T) {
	f := newRemoteFixture(t)
	ctx := context.Background()
	data := []byte("the archived disk")
	if _, err := f.store.Put(ctx, f.farBucket, "disk", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	u, err := f.store.PresignGet(ctx, f.farBucket, "disk", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != f.remote.Endpoint || !strings.Contains(u.RawQuery, f.remote.AccessKey) {
		t.Fatalf("presigned URL %s: want the remote's host and access key", u.Redacted())
	}
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("GET presigned: %s %q", resp.Status, got)
	}
	// Signed for the public endpoint the remote names (as the catalog
	// does for users), the URL names that host.
	pub := f.store.ConfigFor(f.farBucket)
	pub.Endpoint = pub.PublicEndpoint
	signer, err := blob.New(pub)
	if err != nil {
		t.Fatal(err)
	}
	pu, err := signer.PresignGet(ctx, f.farBucket, "disk", time.Minute)
	if err != nil || !strings.HasPrefix(pu.Host, "localhost:") {
		t.Fatalf("public presign: %v %v", pu, err)
	}
	resp, err = http.Get(pu.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET of the public URL: %s", resp.Status)
	}
}

// TestRemoteKeysNeverInErrors: a remote with wrong keys, a remote that
// is down, and a remotes file with a key pasted in fail with errors that
// name the remote and never a key.
func TestRemoteKeysNeverInErrors(t *testing.T) {
	f := newRemoteFixture(t)
	ctx := context.Background()
	wrong := blob.Keys{AccessKey: "AKWRONGACCESSKEY", SecretKey: "wrong-secret-" + strings.Repeat("s", 20)}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		endpoint string
		keys     blob.Keys
		says     string
	}{
		{"wrong keys", f.remote.Endpoint, wrong, "s3://slipway-ds-arc-"},
		{"down", fmt.Sprintf("127.0.0.1:%d", port), blob.Keys{AccessKey: f.remote.AccessKey, SecretKey: f.remote.SecretKey},
			fmt.Sprintf(`S3 remote "archive" (http://127.0.0.1:%d) did not answer`, port)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			remotes, err := blob.ReadRemotes(writeRemotes(t, t.TempDir(), c.endpoint, c.keys, nil))
			if err != nil {
				t.Fatal(err)
			}
			cfg := shared.BlobConfig()
			cfg.Remotes = remotes
			s, err := blob.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			var errs []error
			errs = append(errs, s.EnsureBucket(ctx, f.farBucket+"-x"))
			_, err = s.Put(ctx, f.farBucket, "k", strings.NewReader("data"), 4)
			errs = append(errs, err)
			_, err = s.Stat(ctx, f.farBucket, "k")
			errs = append(errs, err)
			_, err = s.Copy(ctx, f.defBucket, "none", f.farBucket, "k")
			errs = append(errs, err)
			for i, err := range errs {
				if err == nil {
					t.Fatalf("call %d succeeded", i)
				}
				for _, secret := range []string{c.keys.AccessKey, c.keys.SecretKey} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("call %d: error %q holds a key", i, err)
					}
				}
			}
			if !strings.Contains(errs[1].Error(), c.says) {
				t.Errorf("put: %v, want it to say %q", errs[1], c.says)
			}
		})
	}
	// A remotes file with keys pasted in is refused without echoing them.
	dir := t.TempDir()
	path := filepath.Join(dir, "remotes.json")
	body := `{"remotes":[{"name":"archive","endpoint":"127.0.0.1:1","secret_key":"` + wrong.SecretKey + `","buckets":["slipway-ds-a-*"]}]}`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = blob.ReadRemotes(path)
	if err == nil || strings.Contains(err.Error(), wrong.SecretKey) || !strings.Contains(err.Error(), `unknown field "secret_key"`) {
		t.Errorf("a key in the remotes file: %v", err)
	}
}

// TestReadRemotesRefusals: each rule of the remotes file, with its message.
func TestReadRemotesRefusals(t *testing.T) {
	dir := t.TempDir()
	if err := blob.WriteKeys(filepath.Join(dir, "k.json"), blob.Keys{AccessKey: "a", SecretKey: "b"}); err != nil {
		t.Fatal(err)
	}
	remote := func(name, buckets string) string {
		return fmt.Sprintf(`{"name":%q,"endpoint":"http://127.0.0.1:9100","keys_file":"k.json","buckets":[%s]}`, name, buckets)
	}
	for _, c := range []struct{ body, says string }{
		{`{"remotes":[` + remote("default", `"slipway-ds-a"`) + `]}`, `remote "default": a name is`},
		{`{"remotes":[` + remote("Arc", `"slipway-ds-a"`) + `]}`, `remote "Arc": a name is`},
		{`{"remotes":[` + remote("a", ``) + `]}`, `remote "a": buckets is empty`},
		{`{"remotes":[` + remote("a", `"slipway-uploads"`) + `]}`, `bucket "slipway-uploads": a remote holds only created datastores' buckets`},
		{`{"remotes":[` + remote("a", `"slipway-ds-*"`) + `]}`, `bucket "slipway-ds-*": a remote holds only`},
		{`{"remotes":[` + remote("a", `"slipway-ds-A"`) + `]}`, `bucket "slipway-ds-A":`},
		{`{"remotes":[` + remote("a", `"slipway-ds-x*"`) + `,` + remote("b", `"slipway-ds-xy"`) + `]}`, `remotes "a" (slipway-ds-x*) and "b" (slipway-ds-xy) could both hold a bucket`},
		{`{"remotes":[` + remote("a", `"slipway-ds-x"`) + `,` + remote("a", `"slipway-ds-y"`) + `]}`, `remote "a" is named twice`},
		{`{"remotes":[{"name":"a","endpoint":"ftp://h","keys_file":"k.json","buckets":["slipway-ds-a"]}]}`, `scheme must be http or https`},
		{`{"remotes":[{"name":"a","endpoint":"h:1","buckets":["slipway-ds-a"]}]}`, `remote "a": keys_file is missing`},
		{`{"remotes":[{"name":"a","endpoint":"h:1","keys_file":"none.json","buckets":["slipway-ds-a"]}]}`, `remote "a": s3 keys:`},
	} {
		path := filepath.Join(dir, "remotes.json")
		if err := os.WriteFile(path, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := blob.ReadRemotes(path); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want it to say %q", c.body, err, c.says)
		}
	}
	// ConfigFromEnv reads the file SLIPWAY_S3_REMOTES names.
	path := filepath.Join(dir, "remotes.json")
	if err := os.WriteFile(path, []byte(`{"remotes":[`+remote("a", `"slipway-ds-a-*"`)+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(blob.EnvRemotes, path)
	t.Setenv("SLIPWAY_S3_ACCESS_KEY", "x")
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "y")
	cfg, err := blob.ConfigFromEnv()
	if err != nil || len(cfg.Remotes) != 1 || cfg.Remotes[0].Keys.AccessKey != "a" || !cfg.Remotes[0].Holds("slipway-ds-a-1") {
		t.Fatalf("ConfigFromEnv with %s: %+v %v", blob.EnvRemotes, cfg.Remotes, err)
	}
}
