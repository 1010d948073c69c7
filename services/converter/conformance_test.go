package converter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/pkg/worker/workertest"
	"github.com/slipway/slipway/schemas"
)

// TestConformance runs the workers' conformance suite against the
// converter.
func TestConformance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := testenv.NewService(t, ctx, s3, Name, testenv.Uploads, testenv.Images)
	store := env.Store
	raw := rawDisk(t, 4<<20)
	body, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	next := workertest.Seq(9000)
	// Each command is a saga of its own, as each import is: the events'
	// IDs derive from the saga.
	saga := func(id int64) (string, []bus.PubOption) {
		saga := envelope.NewID()
		return blob.URL(testenv.Images, blob.AttemptPrefix(id, saga)+"disk.raw"), []bus.PubOption{bus.WithCorrelation(saga)}
	}

	workertest.Run(t, workertest.Adapter{
		Client: env.Client, Service: Name, Succeeded: "converted", Failed: "failed",
		Start: func(t *testing.T) func() {
			svc := New(env.Bus, store, Config{Config: worker.Config{TempDir: t.TempDir(), ProgressInterval: 50 * time.Millisecond,
				AckWait: 2 * time.Second, Logger: quiet()}, Fetch: fetch.Options{Guard: loopback}})
			return workertest.Start(t, svc.Run, svc.Ready())
		},
		Good: func(t *testing.T) workertest.Command {
			id := next()
			key := fmt.Sprintf("conformance/%d/disk.raw", id)
			if _, err := store.Put(ctx, testenv.Uploads, key, bytes.NewReader(body), int64(len(body))); err != nil {
				t.Fatal(err)
			}
			src := blob.URL(testenv.Uploads, key)
			dest, opts := saga(id)
			return workertest.Command{Verb: "import", ID: idToken(id), Opts: opts,
				Data: schemas.ConverterImport{ImageID: id, Source: src, Dest: dest}}
		},
		Bad: func(t *testing.T) workertest.Command {
			id := next()
			_, opts := saga(id)
			return workertest.Command{Verb: "import", ID: idToken(id), Opts: opts,
				Data: schemas.ConverterImport{ImageID: id, Source: blob.URL(testenv.Uploads, "x/disk.raw"),
					Dest: blob.URL(testenv.Images, "elsewhere/disk.raw")}}
		},
		Slow: func(t *testing.T) (workertest.Command, func()) {
			id := next()
			hold := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				half := len(body) / 2
				w.Write(body[:half])
				w.(http.Flusher).Flush()
				select { // hold the job in its fetch phase
				case <-hold:
				case <-r.Context().Done():
					return
				}
				w.Write(body[half:])
			}))
			t.Cleanup(srv.Close)
			var once sync.Once
			release := func() { once.Do(func() { close(hold) }) }
			t.Cleanup(release)
			dest, opts := saga(id)
			return workertest.Command{Verb: "import", ID: idToken(id), Opts: opts,
				Data: schemas.ConverterImport{ImageID: id, Source: srv.URL + "/disk.raw",
					Checksum: "sha256:" + hex.EncodeToString(sum[:]), Dest: dest}}, release
		},
	})
}
