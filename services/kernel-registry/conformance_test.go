package kernelregistry

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/pkg/worker/workertest"
	"github.com/slipway/slipway/schemas"
)

// TestConformance runs the workers' conformance suite against the kernel
// registry, adding a kernel (a bzImage) through the real catalog. Its
// events are about the kernel's image ID, allocated by the add, or about
// the command (cmd-<seq>): the suite knows them by their causation. A slow
// add is one whose upload S3 holds until it is released: the registry
// reaches MinIO through a proxy that holds the GET of a held key.
func TestConformance(t *testing.T) {
	vmlinuz := filepath.Join(kernelFiles(t), "vmlinuz")
	s := newCatalogStack(t)

	var holds workertest.Holds // object keys
	target, err := url.Parse(endpointURL(s3.BlobConfig()))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet &&
			!holds.Wait(r.Context(), func(key string) bool { return strings.HasSuffix(r.URL.Path, "/"+key) }) {
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	held := s3.BlobConfig()
	held.Endpoint, held.Secure = srv.URL, false
	store, err := blob.New(held)
	if err != nil {
		t.Fatal(err)
	}

	add := func(source string) workertest.Command {
		// Each add is a saga of its own, as the CLI's is.
		return workertest.Command{Verb: schemas.CommandKernelRegistryAdd,
			Data: schemas.KernelRegistryAdd{Source: source, Name: "conformance-" + testenv.Unique()},
			Opts: []bus.PubOption{bus.WithCorrelation(envelope.NewID())}}
	}
	workertest.Run(t, workertest.Adapter{
		Client: testenv.WitnessBus(t, s.ctx, s.url, "cli", testenv.Principal("cli")), Service: Name, Succeeded: schemas.EventKernelRegistryAdded, Failed: schemas.EventKernelRegistryFailed,
		Start: func(t *testing.T) func() {
			svc := New(s.connect(Name), store, Config{Config: worker.Config{TempDir: t.TempDir(), AckWait: 2 * time.Second,
				Logger: s.log}, UploadBucket: s.uploads, FilesBucket: s.files, Initrd: initrdBin})
			return workertest.Start(t, svc.Run, svc.Ready())
		},
		Good: func(t *testing.T) workertest.Command { return add(s.stageFile(vmlinuz)) },
		Bad: func(t *testing.T) workertest.Command {
			// Not a kernel upload: the registry must not touch it.
			return add("s3://" + s.uploads + "/elsewhere/" + testenv.Unique() + "/vmlinuz")
		},
		Slow: func(t *testing.T) (workertest.Command, func()) {
			source := s.stageFile(vmlinuz)
			_, key, err := blob.ParseURL(source)
			if err != nil {
				t.Fatal(err)
			}
			return add(source), holds.Hold(t, key)
		},
	})
}

// endpointURL is the http(s) URL of cfg's endpoint.
func endpointURL(cfg blob.Config) string {
	if strings.Contains(cfg.Endpoint, "://") {
		return cfg.Endpoint
	}
	if cfg.Secure {
		return "https://" + cfg.Endpoint
	}
	return "http://" + cfg.Endpoint
}
