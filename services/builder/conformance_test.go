package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/pkg/worker/workertest"
	"github.com/slipway/slipway/schemas"
)

// TestConformance runs the workers' conformance suite against the
// builder, with disks carried in images (kind disk).
func TestConformance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := testenv.NewService(t, ctx, s3, Name, testenv.Uploads, testenv.Images)
	// The registry holds the layer downloads of a repository named in
	// holds until it is released.
	var holds workertest.Holds // repositories
	host := testenv.OCIRegistry(t, func(reg http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") &&
				!holds.Wait(r.Context(), func(repo string) bool { return strings.HasPrefix(r.URL.Path, "/v2/"+repo+"/") }) {
				return
			}
			reg.ServeHTTP(w, r)
		})
	})
	disk := bytes.Repeat([]byte("QFI\xfb disk "), 5000)
	carried := []file{
		{name: "disk/", typ: tar.TypeDir, mode: 0o555},
		{name: "disk/debian.qcow2", typ: tar.TypeReg, mode: 0o444, data: disk},
	}
	ref := push(t, host, "test/disk", carried, v1.Config{})
	next := workertest.Seq(9000)
	// Each command is a saga of its own, as each build is: the events'
	// IDs derive from the saga.
	build := func(id int64, ref string) workertest.Command {
		saga := envelope.NewID()
		return workertest.Command{Verb: "build", ID: idToken(id), Opts: []bus.PubOption{bus.WithCorrelation(saga)},
			Data: schemas.BuilderBuild{ImageID: id, Reference: ref, Kind: schemas.ContentKindDisk,
				Dest: blob.URL(testenv.Uploads, blob.BuildKey(id, saga))}}
	}

	workertest.Run(t, workertest.Adapter{
		Client: env.Client, Service: Name, Succeeded: "built", Failed: "failed",
		Start: func(t *testing.T) func() {
			svc := New(env.Bus, env.Store, Config{Config: worker.Config{TempDir: t.TempDir(), ProgressInterval: 10 * time.Millisecond,
				AckWait: 2 * time.Second, Logger: quiet()}, GuestInit: initBinary, Registry: oci.Options{Guard: loopback}})
			return workertest.Start(t, svc.Run, svc.Ready())
		},
		Good: func(t *testing.T) workertest.Command { return build(next(), ref) },
		Bad: func(t *testing.T) workertest.Command {
			return build(next(), "nginx:latest") // not pinned: the schema refuses it
		},
		Slow: func(t *testing.T) (workertest.Command, func()) {
			id := next()
			repo := "test/slow" + idToken(id)
			slow := push(t, host, repo, carried, v1.Config{})
			return build(id, slow), holds.Hold(t, repo)
		},
	})
}
