package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	slenvelope "github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/services/builder"
	cryptoluks "github.com/slipway/slipway/services/crypto-luks"
	"github.com/slipway/slipway/services/crypto-luks/keywrap/keywraptest"
)

// rawPub publishes payload on a command subject the way `nats pub` does:
// with no headers, or with the ce- headers of a command in saga (`nats pub
// -H ce-specversion:1.0 -H ce-correlationid:<saga> …`).
func (s *stack) rawPub(service, verb string, payload any, saga string) {
	s.t.Helper()
	data, err := json.Marshal(payload)
	if err != nil {
		s.t.Fatal(err)
	}
	// The sender's name ends the subject; a server that authenticates
	// would hold the client to its own.
	msg := nats.NewMsg("slipway.cmd." + service + "." + verb + "." + acl.AdminUser)
	msg.Data = data
	if saga != "" {
		slenvelope.Envelope{ID: uuid.NewString(), Type: slenvelope.Type(service, verb), Source: "/nats-cli",
			Time: time.Now(), CorrelationID: saga}.SetHeader(msg.Header)
	}
	if err := s.nc.PublishMsg(msg); err != nil {
		s.t.Fatal(err)
	}
}

// TestRawCommandsCannotTouchAnotherImagesBlob publishes, as a plain NATS
// client, commands naming a READY image's blob as their destination, as
// their source and as a staged upload. Every one is refused with an error
// naming the rule, and the blob keeps its bytes, ETag and Last-Modified.
func TestRawCommandsCannotTouchAnotherImagesBlob(t *testing.T) {
	s := newStack(t, stackOptions{})
	keys := keywraptest.New(t)
	cl := s.connect(cryptoluks.Name)
	s.run(cryptoluks.Name, func(ctx context.Context) error {
		return cryptoluks.New(cl, s.store, cryptoluks.Config{Config: worker.Config{TempDir: t.TempDir()}, Keys: keys, IterTime: 100 * time.Millisecond}).Run(ctx)
	})
	bl := s.connect(builder.Name)
	s.run(builder.Name, func(ctx context.Context) error {
		return builder.New(bl, s.store, builder.Config{Config: worker.Config{TempDir: t.TempDir()}}).Run(ctx)
	})
	s.waitForService(cryptoluks.Name)
	s.waitForService(builder.Name)

	dir := t.TempDir()
	disk := filepath.Join(dir, "victim.raw")
	writeRandomRaw(t, disk, 4<<20)
	id, out, code := s.create("--name", "victim", "--path", disk)
	if code != 0 {
		t.Fatalf("victim image:\n%s", out)
	}
	victim := s.show(id)
	bucket, key, err := blob.ParseURL(victim.Source)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(key, "/") // images/<id>/<saga>/disk.raw
	if len(parts) != 4 || uuid.Validate(parts[2]) != nil {
		t.Fatalf("victim blob %s: want images/<id>/<saga>/disk.<format>", victim.Source)
	}
	victimSaga := parts[2]
	before, err := s.store.Stat(s.ctx, bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	// A good upload, so that a failure comes from the rules, not the data.
	good := filepath.Join(dir, "good.raw")
	writeRandomRaw(t, good, 1<<20)
	f, err := os.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	up, err := s.store.Put(s.ctx, "slipway-uploads", blob.UserStagingPrefix(acl.AdminUser)+uuid.NewString()+"/good.raw", f, 1<<20)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	events := make(chan *nats.Msg, 256)
	sub, err := s.nc.ChanSubscribe("slipway.evt.*.failed.>", events)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	wantFailed := func(what, subject string, words ...string) {
		t.Helper()
		timeout := time.After(time.Minute)
		for {
			select {
			case m := <-events:
				if !strings.HasPrefix(m.Subject, subject) {
					continue
				}
				for _, w := range words {
					if !strings.Contains(string(m.Data), w) {
						t.Errorf("%s: %s %s does not name %q", what, m.Subject, m.Data, w)
					}
				}
				return
			case <-timeout:
				t.Fatalf("%s: no %s event", what, subject)
			}
		}
	}
	fresh := uuid.NewString()
	wrongSum := "sha256:" + strings.Repeat("0", 64)
	derived := func(img int64, saga string) string {
		return blob.URL(bucket, blob.AttemptPrefix(img, saga)+"disk.raw")
	}

	// As destination.
	s.rawPub("converter", "import", map[string]any{"image_id": 90, "source": up.URL(), "dest": victim.Source}, "")
	wantFailed("import to another image's blob", "slipway.evt.converter.failed.90", "derived")
	s.rawPub("converter", "import", map[string]any{"image_id": id, "source": up.URL(), "checksum": wrongSum, "dest": victim.Source}, victimSaga)
	wantFailed("failing import in the victim's saga", "slipway.evt.converter.failed."+idStr(id), "checksum")
	s.rawPub("converter", "import", map[string]any{"image_id": id, "source": up.URL(), "dest": victim.Source}, victimSaga)
	wantFailed("import over the victim in its saga", "slipway.evt.converter.failed."+idStr(id), "another command")
	s.rawPub("converter", "create-blank", map[string]any{"image_id": 91, "size_mib": 1, "format": "raw", "dest": victim.Source}, "")
	wantFailed("create-blank to another image's blob", "slipway.evt.converter.failed.91", "derived")
	s.rawPub("crypto-luks", "create", map[string]any{"image_id": 92, "size_mib": 1, "dest": victim.Source}, "")
	wantFailed("LUKS create to another image's blob", "slipway.evt.crypto-luks.failed.92", "derived")
	s.rawPub("crypto-luks", "create", map[string]any{"image_id": id, "size_mib": 1, "dest": victim.Source}, victimSaga)
	wantFailed("LUKS create over the victim in its saga", "slipway.evt.crypto-luks.failed."+idStr(id), "another command")
	s.rawPub("builder", "build", map[string]any{"image_id": 93, "kind": "container", "dest": victim.Source,
		"reference": "registry.invalid/x@sha256:" + strings.Repeat("a", 64)}, "")
	wantFailed("build to another image's blob", "slipway.evt.builder.failed.93", "derived")

	// As source.
	s.rawPub("converter", "import", map[string]any{"image_id": 94, "source": victim.Source, "dest": derived(94, fresh)}, fresh)
	wantFailed("import from another image's blob", "slipway.evt.converter.failed.94", `bucket \"`+bucket+`\"`, blob.EnvImportBuckets)
	s.rawPub("crypto-luks", "encrypt", map[string]any{"image_id": 95, "source": victim.Source, "source_format": "raw", "dest": victim.Source}, "")
	wantFailed("encrypt into another image's blob", "slipway.evt.crypto-luks.failed.95", "derived")
	s.rawPub("catalog", "image-create", map[string]any{"name": "steal", "path": victim.Source}, "")
	wantFailed("image-create from another image's blob", "slipway.evt.catalog.failed.", `bucket \"`+bucket+`\"`, blob.EnvImportBuckets)

	// As staged upload.
	s.rawPub("catalog", "image-create", map[string]any{"name": "eat", "path": victim.Source, "staged": true}, "")
	wantFailed("image-create staging another image's blob", "slipway.evt.catalog.failed.", `bucket \"`+bucket+`\"`)
	// Another import's build, in the upload bucket but not a staged upload.
	build := blob.BuildKey(77, uuid.NewString())
	if _, err := s.store.Put(s.ctx, "slipway-uploads", build, strings.NewReader("a build in flight"), 17); err != nil {
		t.Fatal(err)
	}
	s.rawPub("catalog", "image-create", map[string]any{"name": "eat-build", "path": blob.URL("slipway-uploads", build), "staged": true}, "")
	wantFailed("image-create staging another import's build", "slipway.evt.catalog.failed.", "oneadmin stages only s3://slipway-uploads/uploads/oneadmin/")
	if _, err := s.store.Stat(s.ctx, "slipway-uploads", build); err != nil {
		t.Errorf("another import's build: %v", err)
	}

	// Everything settled: the blob was neither rewritten nor deleted. (It
	// was not read either: every refusal above comes from a check that
	// runs before a service opens any object. MinIO's bucket
	// notifications, which would show reads, do not work with the
	// development MinIO build the tests use.)
	time.Sleep(2 * time.Second)
	after, err := s.store.Stat(s.ctx, bucket, key)
	if err != nil {
		t.Fatalf("the victim's blob is gone: %v", err)
	}
	if after.ETag != before.ETag || !after.LastModified.Equal(before.LastModified) {
		t.Errorf("the victim's blob was rewritten: %+v, was %+v", after, before)
	}
	if sum, _ := s.objectSHA256(victim.Source); sum != victim.SHA256 {
		t.Errorf("victim blob SHA-256 %s, recorded %s", sum, victim.SHA256)
	}
	if got := s.show(id); got.State != "READY" || got.Source != victim.Source {
		t.Errorf("victim image %+v", got)
	}
}

func idStr(id int64) string { return strconv.FormatInt(id, 10) }
