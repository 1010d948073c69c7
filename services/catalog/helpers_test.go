package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// s3 is one MinIO shared by the package's tests; each test uses fresh
// buckets through its own datastore names.
var s3 testenv.S3

func TestMain(m *testing.M) { os.Exit(testenv.RunWithMinIO(m, "catalog", &s3)) }

// harness is a catalog over a real nats-server and MinIO, with a CLI-side
// bus to send commands, a converter-side bus to send converter events, and
// a recorder of everything published.
type harness struct {
	t          testing.TB
	ctx        context.Context
	url        string
	cfg        Config
	svc        *Service
	cli        *bus.Bus            // sends commands as the CLI does
	services   map[string]*bus.Bus // senderOf's, by service
	servicesMu sync.Mutex
	converter  *bus.Bus // sends converter events
	blobs      *blob.Store
	rec        *testenv.Recorder
	stop       func()
	nats       *server.Server // testenv.NATS's; restartNATS replaces it
	// credsOf are the credentials files of the users newUser made.
	credsOf map[string]string
}

func newHarness(t testing.TB, mutate ...func(*Config)) *harness {
	t.Helper()
	url, srv := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	sfx := testenv.Unique()
	cfg := Config{
		Datastores: []Datastore{
			{Name: "default", Kind: KindImage, Bucket: "img-" + sfx, Types: imageTypes(KindImage)},
			{Name: "files", Kind: KindFile, Bucket: "files-" + sfx, Types: imageTypes(KindFile)},
		},
		UploadBucket:      "uploads-" + sfx,
		ReconcileInterval: 100 * time.Millisecond,
		VerifyDigest:      true,
		Logger:            testenv.Logger(t, slog.LevelWarn),
		// The catalog signs its users' JWTs with the keys the server trusts.
		IdentityDir: testenv.ServerIdentityDir(t, url),
	}
	for _, f := range mutate {
		f(&cfg)
	}
	blobs, err := blob.New(s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ctx: ctx, url: url, cfg: cfg, blobs: blobs, nats: srv}
	h.cli = h.connect("cli")
	h.converter = h.connect("converter")
	// The recorder sees commands too, which only a witness may.
	h.rec = record(t, testenv.Dial(t, url), "slipway.evt.>", "slipway.cmd.converter.>")
	h.start()
	return h
}

// connect connects as service (a service of the contract), or else as
// oneadmin.
func (h *harness) connect(service string) *bus.Bus {
	h.t.Helper()
	return testenv.Connect(h.t, h.ctx, h.url, service)
}

// start runs a catalog; stop ends it and waits for Run to return.
func (h *harness) start() *Service {
	h.t.Helper()
	svc := New(h.connect(ServiceName), h.blobs, h.cfg)
	h.svc, h.stop = svc, testenv.Start(h.t, h.ctx, "catalog", svc.Run, svc.Ready())
	return svc
}

// command sends a command as the CLI does and returns its envelope.
func (h *harness) command(verb string, data any) envelope.Envelope {
	h.t.Helper()
	return testenv.Command(h.t, h.ctx, h.cli, ServiceName, verb, data)
}

// create sends image-create and waits for image-created.
func (h *harness) create(req schemas.ImageCreate) schemas.Image {
	h.t.Helper()
	env := h.command(schemas.CommandCatalogImageCreate, req)
	m := h.rec.Wait(h.t, "image-created for "+req.Name, func(m *nats.Msg) bool {
		return strings.Contains(m.Subject, ".image-created.") && m.Header.Get(envelope.HeaderCausationID) == env.ID
	})
	var img schemas.Image
	mustJSON(h.t, m.Data, &img)
	return img
}

// convertCommand waits for the converter command of image id.
func (h *harness) convertCommand(id int64) (*nats.Msg, schemas.ConverterImport) {
	h.t.Helper()
	m := h.rec.Wait(h.t, fmt.Sprintf("converter command for image %d", id), func(m *nats.Msg) bool {
		if !strings.HasPrefix(m.Subject, "slipway.cmd.converter.") {
			return false
		}
		var c struct {
			ImageID int64 `json:"image_id"`
		}
		return json.Unmarshal(m.Data, &c) == nil && c.ImageID == id
	})
	var c schemas.ConverterImport
	if m.Subject == "slipway.cmd.converter.import.catalog" {
		mustJSON(h.t, m.Data, &c)
	} else {
		var b schemas.ConverterCreateBlank
		mustJSON(h.t, m.Data, &b)
		c = schemas.ConverterImport{ImageID: b.ImageID, Dest: b.Dest, Format: b.Format}
	}
	return m, c
}

// convert plays the converter: it stores data at the command's dest and
// reports it converted.
func (h *harness) convert(cmd *nats.Msg, c schemas.ConverterImport, data []byte, format schemas.DiskFormat) schemas.ConverterConverted {
	h.t.Helper()
	bucket, key, err := blob.ParseURL(c.Dest)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := h.blobs.Put(h.ctx, bucket, key, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		h.t.Fatal(err)
	}
	ev := schemas.ConverterConverted{ImageID: c.ImageID, Dest: c.Dest, Format: format,
		VirtualSize: int64(len(data)) * 4, Size: info.Size, SHA256: info.SHA256, S3Checksum: info.S3Checksum, DetectedFormat: format}
	h.converterEvent(cmd, "converted", c.ImageID, ev)
	return ev
}

func (h *harness) converterEvent(cmd *nats.Msg, event string, id int64, data any) {
	h.t.Helper()
	cause, err := envelope.FromHeader(cmd.Header)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.converter.Event(h.ctx, event, idToken(id), data, bus.CausedBy(cause)); err != nil {
		h.t.Fatal(err)
	}
}

// waitState waits for the state-changed event of image id to state to.
func (h *harness) waitState(id int64, to State) schemas.StateChanged {
	h.t.Helper()
	m := h.rec.Wait(h.t, fmt.Sprintf("image %d to become %s", id, to), func(m *nats.Msg) bool {
		if m.Subject != "slipway.evt.catalog.state-changed."+idToken(id) {
			return false
		}
		var ev schemas.StateChanged
		return json.Unmarshal(m.Data, &ev) == nil && State(ev.To) == to
	})
	var ev schemas.StateChanged
	mustJSON(h.t, m.Data, &ev)
	return ev
}

// waitFailed waits for a failed event of the workflow the command env
// started (same correlation), as the CLI does.
func (h *harness) waitFailed(env envelope.Envelope) (*nats.Msg, schemas.Failure) {
	h.t.Helper()
	m := h.rec.Wait(h.t, "failed event of "+env.Type, func(m *nats.Msg) bool {
		return strings.HasPrefix(m.Subject, "slipway.evt.catalog.failed.") && m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID
	})
	var ev schemas.Failure
	mustJSON(h.t, m.Data, &ev)
	return m, ev
}

// show asks the show query for image id.
func (h *harness) show(id int64) (schemas.Image, error) {
	var img schemas.Image
	err := h.cli.Query(h.ctx, ServiceName, schemas.QueryCatalogShow, schemas.CatalogShowRequest{ID: &id}, &img)
	return img, err
}

func (h *harness) mustShow(id int64) schemas.Image {
	h.t.Helper()
	img, err := h.show(id)
	if err != nil {
		h.t.Fatalf("show image %d: %v", id, err)
	}
	return img
}

// exists reports whether an object is in the store.
func (h *harness) exists(url string) bool {
	h.t.Helper()
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		h.t.Fatal(err)
	}
	_, err = h.blobs.Stat(h.ctx, bucket, key)
	if err != nil && !blob.IsNotFound(err) {
		h.t.Fatal(err)
	}
	return err == nil
}

func (h *harness) put(url string, data []byte) {
	h.t.Helper()
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.blobs.Put(h.ctx, bucket, key, bytes.NewReader(data), int64(len(data))); err != nil {
		h.t.Fatal(err)
	}
}

// record keeps every message on some subjects and checks each catalog
// event against its schema.
func record(t testing.TB, nc *nats.Conn, subjects ...string) *testenv.Recorder {
	t.Helper()
	return testenv.Record(t, nc, func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, "slipway.evt.catalog.") {
			name := strings.Split(m.Subject, ".")[3]
			if err := schemas.Validate(schemas.KindEvent, ServiceName, name, m.Data); err != nil {
				t.Errorf("catalog published an invalid %s event: %v\n%s", name, err, m.Data)
			}
		}
	}, subjects...)
}

func mustJSON(t testing.TB, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// stateChanges lists the transitions published for image id, in order.
func stateChanges(r *testenv.Recorder, id int64) []string {
	var out []string
	for _, m := range r.All(func(m *nats.Msg) bool { return m.Subject == "slipway.evt.catalog.state-changed."+idToken(id) }) {
		var ev schemas.StateChanged
		_ = json.Unmarshal(m.Data, &ev)
		out = append(out, fmt.Sprintf("%s->%s", ev.From, ev.To))
	}
	return out
}

// attemptKey matches a key of one attempt: images/<id>/<saga>/<name>.
var attemptKey = regexp.MustCompile(`/images/([0-9]+)/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/([^/]+)$`)

// inAttempt reports whether u is an attempt's key for image id, named name.
func inAttempt(u string, id int64, name string) bool {
	m := attemptKey.FindStringSubmatch(u)
	return m != nil && m[1] == strconv.FormatInt(id, 10) && m[2] == name
}
