package converter

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// victim is another image's committed blob, written by another command.
type victim struct {
	url  string
	data []byte
	info blob.ObjectInfo
}

const victimSaga = "6a0e8f4b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"

func putVictim(t *testing.T, h *harness, id int64) victim {
	t.Helper()
	data := bytes.Repeat([]byte("someone else's disk "), 4096)
	key := blob.AttemptPrefix(id, victimSaga) + "disk.raw"
	if _, err := h.store.Put(h.ctx, testenv.Images, key, bytes.NewReader(data), int64(len(data)), blob.OwnedBy("the-real-import")); err != nil {
		t.Fatal(err)
	}
	info, err := h.store.Stat(h.ctx, testenv.Images, key)
	if err != nil {
		t.Fatal(err)
	}
	return victim{url: blob.URL(testenv.Images, key), data: data, info: info}
}

// intact checks the victim still holds its bytes, unchanged since it was
// written (same ETag and Last-Modified: not overwritten, not re-put).
func (v victim) intact(t *testing.T, h *harness) {
	t.Helper()
	bucket, key, _ := blob.ParseURL(v.url)
	info, err := h.store.Stat(h.ctx, bucket, key)
	if err != nil {
		t.Fatalf("%s: %v", v.url, err)
	}
	if info.ETag != v.info.ETag || !info.LastModified.Equal(v.info.LastModified) || info.Command != "the-real-import" {
		t.Fatalf("%s was rewritten: %+v, was %+v", v.url, info, v.info)
	}
	rc, _, err := h.store.Get(h.ctx, bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, v.data) {
		t.Fatalf("%s: bytes changed", v.url)
	}
}

// rawPub publishes a command as `nats pub` does: plain JSON on the command
// subject; with no saga, no headers at all (the bus makes up an envelope
// whose correlation is a fresh ID), else the ce- headers of an envelope
// in that saga (`nats pub -H ce-correlationid:<saga> -H ...`).
func rawPub(t *testing.T, h *harness, verb string, payload any, saga string) {
	t.Helper()
	data, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("slipway.cmd.converter." + verb)
	msg.Data = data
	if saga != "" {
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		envelope.Envelope{ID: hex.EncodeToString(id), Type: envelope.Type(Name, verb), Source: "/nats-cli",
			Time: time.Now(), CorrelationID: saga}.SetHeader(msg.Header)
	}
	nc := testenv.Dial(t, h.url)
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func wantFailed(t *testing.T, h *harness, id string, words ...string) {
	t.Helper()
	var ev schemas.Failure
	h.event("failed", id, &ev)
	if ev.Retryable {
		t.Errorf("failed %+v: want a terminal refusal", ev)
	}
	for _, w := range words {
		if !strings.Contains(ev.Error, w) {
			t.Errorf("failed %q: want it to name %q", ev.Error, w)
		}
	}
}

// TestRawCommandsLeaveOtherBlobsAlone sends, as a plain NATS client would,
// commands that name another image's blob as destination or as source.
// None may read, overwrite or delete it.
func TestRawCommandsLeaveOtherBlobsAlone(t *testing.T) {
	h := newHarness(t, Config{})
	v := putVictim(t, h, 50)
	good := h.upload(rawDisk(t, 2<<20), "uploads/good/disk.raw")

	// Another image's blob as dest: the key is not the one derived for
	// image 51 and this command's saga.
	rawPub(t, h, "import", map[string]any{"image_id": 51, "source": good, "dest": v.url}, "")
	wantFailed(t, h, "51", v.url, "derived")
	v.intact(t, h)
	rawPub(t, h, "create-blank", map[string]any{"image_id": 51, "size_mib": 1, "format": "raw", "dest": v.url}, "")
	wantFailed(t, h, "51", "derived")
	v.intact(t, h)

	// The same image and the victim's own saga, so the key is the derived
	// one: a failing source must not make the clean-up delete it...
	saga := victimSaga
	wrong := "sha256:" + strings.Repeat("0", 64)
	rawPub(t, h, "import", map[string]any{"image_id": 50, "source": good, "checksum": wrong, "dest": v.url}, saga)
	wantFailed(t, h, "50", "checksum")
	v.intact(t, h)
	// ...and a good source must not overwrite it.
	rawPub(t, h, "import", map[string]any{"image_id": 50, "source": good, "dest": v.url}, saga)
	wantFailed(t, h, "50", v.url, "another command")
	v.intact(t, h)
	rawPub(t, h, "create-blank", map[string]any{"image_id": 50, "size_mib": 1, "format": "raw", "dest": v.url}, saga)
	wantFailed(t, h, "50", "another command")
	v.intact(t, h)

	// Another image's blob as source: refused before anything is fetched,
	// naming the bucket and the setting that would allow a bucket.
	rawPub(t, h, "import", map[string]any{"image_id": 52, "source": v.url, "dest": testenv.Dest(52, "disk.raw")}, testenv.Saga)
	wantFailed(t, h, "52", `bucket "`+testenv.Images+`"`, blob.EnvImportBuckets)
	v.intact(t, h)
	assertNoObject(t, h, testenv.Dest(52, "disk.raw"))

	// The service still works.
	h.command("import", schemas.ConverterImport{ImageID: 53, Source: good, Dest: testenv.Dest(53, "disk.raw")})
	var ok schemas.ConverterConverted
	h.event("converted", "53", &ok)
	assertStored(t, h, ok)
}

// TestImportBuckets reads s3:// sources from a bucket only once an
// operator lists it.
func TestImportBuckets(t *testing.T) {
	loc := blob.DefaultLocations()
	h := newHarness(t, Config{Locations: loc})
	const extra = "operator-imports"
	if err := h.store.EnsureBucket(h.ctx, extra); err != nil {
		t.Fatal(err)
	}
	path := rawDisk(t, 2<<20)
	src := h.upload(path, "x/disk.raw")
	bucket, key, _ := blob.ParseURL(src)
	if _, err := h.store.Copy(h.ctx, bucket, key, extra, "disk.raw"); err != nil {
		t.Fatal(err)
	}
	h.command("import", schemas.ConverterImport{ImageID: 60, Source: blob.URL(extra, "disk.raw"), Dest: testenv.Dest(60, "disk.raw")})
	wantFailed(t, h, "60", `bucket "`+extra+`"`, blob.EnvImportBuckets)

	loc.ImportBuckets = []string{extra}
	h2 := newHarness(t, Config{Locations: loc})
	h2.command("import", schemas.ConverterImport{ImageID: 61, Source: blob.URL(extra, "disk.raw"), Dest: testenv.Dest(61, "disk.raw")})
	var ok schemas.ConverterConverted
	h2.event("converted", "61", &ok)
	assertStored(t, h2, ok)
}
