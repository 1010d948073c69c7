package cryptoluks

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/sealbox"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/keywrap"
)

// env is a real NATS server, a real MinIO and crypto-luks between them,
// and everything a leak scan needs (the catalog, which locks images for
// slot changes, runs with crypto-luks in the CLI's end-to-end test).
type env struct {
	t       *testing.T
	root    *testing.T // the test itself: logs go there, subtests come and go
	url     string
	nc      *nats.Conn
	bus     *bus.Bus // the test's own connection ("test")
	store   *blob.Store
	rec     *testenv.Recorder
	logs    *testenv.Buffer
	tmp     string
	svcStop func()
	svc     *Service

	mu       sync.Mutex
	passes   [][]byte // every passphrase seen, for the leak scan
	keysUsed []*keywrap.Keyring
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.Program(t, "qemu-img", "apt-get install qemu-utils")
	url, _ := testenv.NATS(t)
	s3 := testenv.MinIO(t)
	store, err := blob.New(s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	nc := testenv.Dial(t, url)
	b, err := bus.New(nc, bus.Config{Service: "test", Sender: testenv.Sender("test")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: t, url: url, nc: nc, bus: b, store: store, logs: &testenv.Buffer{}, tmp: t.TempDir()}
	// Everything on the bus, query replies included, is kept for the leak
	// scan; events are checked against their schemas on the way.
	e.rec = testenv.Record(t, nc, func(m *nats.Msg) {
		if !strings.HasPrefix(m.Subject, "slipway.evt.crypto-luks.") {
			return
		}
		name := strings.Split(m.Subject, ".")[3]
		if err := schemas.Validate(schemas.KindEvent, Name, name, m.Data); err != nil {
			t.Errorf("%s: %v", m.Subject, err)
		}
	}, "slipway.>", "_INBOX.>")
	for _, bucket := range []string{"src", "dst"} {
		if err := store.EnsureBucket(ctx, bucket); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(e.stopService) // subtests start services; the test stops the last
	return e
}

// startService runs crypto-luks with keys on its own connection until
// stopService (or the test's end).
func (e *env) startService(keys *keywrap.Keyring) { e.startServiceWith(keys, nil) }

// startServiceWith is startService with tune changing the configuration.
func (e *env) startServiceWith(keys *keywrap.Keyring, tune func(*Config)) {
	e.t.Helper()
	e.stopService()
	b, err := bus.Connect(context.Background(), bus.Config{URL: e.url, Service: Name,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, testenv.Writer{T: e.root}), nil))},
		testenv.As(e.t, e.url, testenv.Principal(Name))...)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := Config{Config: worker.Config{TempDir: e.tmp, ProgressInterval: 50 * time.Millisecond, MaxDeliver: 10,
		AckWait: 3 * time.Second}, Keys: keys, IterTime: 10 * time.Millisecond, Locations: testLocations}
	if tune != nil {
		tune(&cfg)
	}
	svc := New(b, e.store, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
	case err := <-done:
		cancel()
		b.Close()
		e.t.Fatalf("service stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		e.t.Fatal("service not ready after 30s")
	}
	e.svc = svc
	e.keysUsed = append(e.keysUsed, keys)
	e.svcStop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("service run: %v", err)
		}
		b.Close()
	}
}

// run is t.Run with e's helpers failing the subtest, not its parent.
func (e *env) run(t *testing.T, name string, f func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		parent := e.t
		e.t = t
		defer func() { e.t = parent }()
		f(t)
	})
}

func (e *env) stopService() {
	if e.svcStop != nil {
		e.svcStop()
		e.svcStop = nil
	}
}

// command sends a crypto-luks command and returns the first event it
// caused: one of accept, or failed.
func (e *env) command(verb string, data any, accept ...string) (*bus.Msg, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return e.bus.Call(ctx, Name, verb, data, accept, bus.WithCorrelation(testSaga))
}

func (e *env) mustCommand(verb string, data any, accept string, out any) {
	e.t.Helper()
	m, err := e.command(verb, data, accept)
	if err != nil {
		e.t.Fatalf("%s: %v", verb, err)
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		e.t.Fatal(err)
	}
}

// refused sends a command that must fail with an error containing want.
func (e *env) refused(verb string, data any, want string) {
	e.t.Helper()
	_, err := e.command(verb, data, "encrypted", "slots-changed", "kek-rotated")
	if !bus.IsCallError(err) || !strings.Contains(err.Error(), want) {
		e.t.Fatalf("%s: err %v, want a refusal mentioning %q", verb, err, want)
	}
}

// passphrase asks the secret query with a one-time key, as a launcher
// does, and opens the sealed answer.
func (e *env) passphrase(secret string, slot *int) ([]byte, error) {
	k, err := sealbox.GenerateKey()
	if err != nil {
		return nil, err
	}
	var rep schemas.CryptoLuksSecretReply
	req := schemas.CryptoLuksSecretRequest{Secret: secret, PublicKey: sealbox.EncodePublicKey(k.PublicKey())}
	if slot != nil {
		n := int64(*slot)
		req.Slot = &n
	}
	if err := e.bus.Query(context.Background(), Name, "secret", req, &rep); err != nil {
		return nil, err
	}
	box, err := base64.StdEncoding.DecodeString(rep.Sealed)
	if err != nil {
		return nil, err
	}
	p, err := sealbox.Open(k, box)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.passes = append(e.passes, p)
	e.mu.Unlock()
	return p, nil
}

func (e *env) mustPassphrase(secret string, slot *int) []byte {
	e.t.Helper()
	p, err := e.passphrase(secret, slot)
	if err != nil {
		e.t.Fatalf("secret %s: %v", secret, err)
	}
	return p
}

// fetch downloads an s3:// object into a file under the test's temp dir.
func (e *env) fetch(u, name string) string {
	e.t.Helper()
	bucket, key, err := blob.ParseURL(u)
	if err != nil {
		e.t.Fatal(err)
	}
	path := e.t.TempDir() + "/" + name
	if err := e.store.Client().FGetObject(context.Background(), bucket, key, path, minio.GetObjectOptions{}); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// scanForLeaks fails the test when any passphrase seen appears, raw or
// base64-encoded, in a KV value (every revision kept), an S3 object, a
// message recorded on the bus or the service's log.
func (e *env) scanForLeaks() {
	e.t.Helper()
	e.mu.Lock()
	passes := e.passes
	e.mu.Unlock()
	if len(passes) == 0 {
		e.t.Fatal("leak scan: no passphrase was seen, so the scan would prove nothing")
	}
	var needles [][]byte
	for _, p := range passes {
		needles = append(needles, p, []byte(base64.StdEncoding.EncodeToString(p)), []byte(base64.RawStdEncoding.EncodeToString(p)))
	}
	check := func(where string, data []byte) {
		for _, n := range needles {
			if bytes.Contains(data, n) {
				e.t.Errorf("a passphrase appears in %s", where)
				return
			}
		}
	}
	ctx := context.Background()
	js, _ := jetstream.New(e.nc)
	kvs, values := 0, 0
	for name := range js.KeyValueStoreNames(ctx).Name() {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			e.t.Fatal(err)
		}
		kvs++
		// Every revision the bucket keeps, deleted keys included.
		w, err := kv.WatchAll(ctx, jetstream.IncludeHistory())
		if err != nil {
			e.t.Fatal(err)
		}
		for entry := range w.Updates() {
			if entry == nil {
				break // the history is replayed
			}
			values++
			check("KV "+name+"/"+entry.Key(), entry.Value())
		}
		_ = w.Stop()
	}
	objects := 0
	buckets, err := e.store.Client().ListBuckets(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, bk := range buckets {
		keys, err := e.store.List(ctx, bk.Name, "")
		if err != nil {
			e.t.Fatal(err)
		}
		for _, k := range keys {
			objects++
			e.scanObject(bk.Name, k, needles)
		}
	}
	msgs := e.rec.All(func(*nats.Msg) bool { return true })
	for _, m := range msgs {
		check("bus message "+m.Subject, m.Data)
		for k, vs := range m.Header {
			check("header "+k+" of "+m.Subject, []byte(strings.Join(vs, "\n")))
		}
	}
	check("the service log", e.logs.Bytes())
	e.t.Logf("leak scan: %d passphrases in %d KV buckets (%d values), %d S3 objects, %d bus messages, %d bytes of log",
		len(passes), kvs, values, objects, len(msgs), len(e.logs.Bytes()))
	if values == 0 || objects == 0 || len(msgs) == 0 {
		e.t.Errorf("leak scan saw too little to mean anything")
	}
}

// scanObject streams an object, keeping an overlap between chunks so a
// needle across a chunk boundary is found too.
func (e *env) scanObject(bucket, key string, needles [][]byte) {
	rc, _, err := e.store.Get(context.Background(), bucket, key)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	const overlap = 128
	buf := make([]byte, 1<<20)
	carry := 0
	for {
		n, err := io.ReadFull(rc, buf[carry:])
		data := buf[:carry+n]
		for _, nd := range needles {
			if bytes.Contains(data, nd) {
				e.t.Errorf("a passphrase appears in s3://%s/%s", bucket, key)
				return
			}
		}
		if err != nil {
			return
		}
		carry = copy(buf, data[len(data)-overlap:])
	}
}

// testSaga is the correlation (saga) ID of the test commands.
const testSaga = "3c9d2e1f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"

// testLocations make "src" and "dst" the datastore buckets.
var testLocations = blob.Locations{DatastoreBuckets: []string{"dst", "src"}, UploadBucket: "slipway-uploads"}

// dst is the destination crypto-luks accepts for image id in testSaga.
func dst(id int64) string {
	return blob.URL("dst", blob.AttemptPrefix(id, testSaga)+"disk.luks")
}
