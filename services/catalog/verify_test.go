package catalog

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// throughProxy restarts the harness's catalog with a store that reaches
// MinIO through a counting proxy, in parts of 5 MiB (so that an 11 MiB
// blob is a multipart upload of 3 parts), and returns the proxy.
func (h *harness) throughProxy() *testenv.S3Proxy {
	h.t.Helper()
	proxy, through := s3.Proxy(h.t)
	cfg := through.BlobConfig()
	cfg.PartSize = 5 << 20
	blobs, err := blob.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.stop()
	h.blobs = blobs
	h.start()
	return proxy
}

// TestCommitVerifiesByS3Checksum: a report carrying the S3 checksum the
// store recorded commits the image READY with a HEAD and no GET of the
// blob; a report without one (an older writer) makes the catalog read the
// blob back as before; a report whose checksum is not the object's ends
// the image in ERROR naming both.
func TestCommitVerifiesByS3Checksum(t *testing.T) {
	h := newHarness(t)
	proxy := h.throughProxy()
	data := make([]byte, 11<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	other := append([]byte("another blob entirely"), data[:6<<20]...)
	otherURL := "s3://" + h.cfg.UploadBucket + "/other"
	bucket, key, _ := blob.ParseURL(otherURL)
	otherInfo, err := h.blobs.Put(h.ctx, bucket, key, bytes.NewReader(other), int64(len(other)))
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name     string
		checksum func(stored blob.Info) string
		state    State
		wantGets bool
	}{
		{"matching", func(stored blob.Info) string { return stored.S3Checksum }, StateReady, false},
		{"absent", func(blob.Info) string { return "" }, StateReady, true},
		{"mismatching", func(blob.Info) string { return otherInfo.S3Checksum }, StateError, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := h.create(schemas.ImageCreate{Name: "v-" + c.name, SizeMiB: 16})
			cmd, conv := h.convertCommand(img.ID)
			bucket, key, err := blob.ParseURL(conv.Dest)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := h.blobs.Put(h.ctx, bucket, key, bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(stored.S3Checksum, "-3") {
				t.Fatalf("stored as %q, want a composite checksum of 3 parts", stored.S3Checksum)
			}
			heads, gets := proxy.Count(http.MethodHead, bucket, key), proxy.Count(http.MethodGet, bucket, key)
			report := c.checksum(stored)
			h.converterEvent(cmd, "converted", img.ID, schemas.ConverterConverted{ImageID: img.ID, Dest: conv.Dest,
				Format: schemas.DiskFormatRaw, VirtualSize: 16 << 20, Size: stored.Size, SHA256: stored.SHA256, S3Checksum: report})
			ev := h.waitState(img.ID, c.state)
			heads, gets = proxy.Count(http.MethodHead, bucket, key)-heads, proxy.Count(http.MethodGet, bucket, key)-gets
			t.Logf("commit: %d HEAD, %d GET of the blob", heads, gets)
			if heads == 0 {
				t.Error("the commit did not look at the object")
			}
			if got := gets > 0; got != c.wantGets {
				t.Errorf("the commit read the blob back %d times; want a read: %v", gets, c.wantGets)
			}
			switch c.state {
			case StateReady:
				if got := h.mustShow(img.ID); got.SHA256 != stored.SHA256 || got.StoredSize != stored.Size {
					t.Errorf("READY image = %+v, want the writer's SHA-256 %s", got, stored.SHA256)
				}
			case StateError:
				want := conv.Dest + " has S3 checksum " + stored.S3Checksum + ", but the converter reported " + report
				if ev.Error != want {
					t.Errorf("error = %q, want %q", ev.Error, want)
				}
				waitFor(t, "the refused blob to be deleted", func() bool { return !h.exists(conv.Dest) })
			}
		})
	}
}

// TestReleaseSaveChecksS3Checksum: a saved disk reported with the S3
// checksum the store recorded replaces the image's blob without being
// read back; one whose checksum is not the object's is refused naming
// both, the image unchanged.
func TestReleaseSaveChecksS3Checksum(t *testing.T) {
	h := newHarness(t)
	proxy := h.throughProxy()
	orig := []byte("the original disk")
	img := h.ready(schemas.ImageCreate{Name: "pers", SizeMiB: 1, Persistent: true}, orig)
	h.mustUse(img.ID, 7)
	stage := func(key string, data []byte) (*schemas.ImageSave, blob.Info) {
		info, err := h.blobs.Put(h.ctx, h.cfg.UploadBucket, key, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		return &schemas.ImageSave{Source: info.URL(), Format: schemas.DiskFormatRaw, Size: info.Size,
			VirtualSize: 1 << 20, SHA256: info.SHA256, S3Checksum: info.S3Checksum}, info
	}

	bad, stored := stage("vms/7/disk-0.raw", []byte("what the VM wrote"))
	_, other := stage("vms/8/disk-0.raw", []byte("something else"))
	// A report that describes other bytes, its two digests agreeing.
	bad.SHA256, bad.S3Checksum = other.SHA256, other.S3Checksum
	_, err := h.release(img.ID, 7, bad)
	want := "image 0: the saved disk " + bad.Source + " has S3 checksum " + stored.S3Checksum + ", but " + other.S3Checksum +
		" was reported; nothing was saved and VM 7 still holds the image"
	if msg := refusalOf(t, err); msg != want {
		t.Fatalf("bad checksum: %q, want %q", msg, want)
	}
	if got := h.mustShow(img.ID); got.SHA256 != sha(orig) || State(got.State) != StateUsedPers {
		t.Fatalf("image after a refused save: %+v", got)
	}

	changed := bytes.Repeat([]byte("changed by VM 7 "), 5000)
	good, _ := stage("vms/7/disk-1.raw", changed)
	bucket, key, _ := blob.ParseURL(good.Source)
	gets := proxy.Count(http.MethodGet, bucket, key)
	h.mustRelease(img.ID, 7, good)
	if n := proxy.Count(http.MethodGet, bucket, key) - gets; n != 0 {
		t.Errorf("the saved disk was read back %d times although its S3 checksum matched", n)
	}
	if got := h.mustShow(img.ID); got.SHA256 != sha(changed) || !bytes.Equal(h.read(got.Source), changed) {
		t.Fatalf("image after the save: %+v", got)
	}
}

// TestCommitRefusesDisagreeingDigests: a single PUT's S3 checksum is the
// content's SHA-256, so a report whose two digests differ is refused even
// though the checksum is the object's (the SHA-256 the catalog would keep
// is not the stored content's).
func TestCommitRefusesDisagreeingDigests(t *testing.T) {
	h := newHarness(t)
	img := h.create(schemas.ImageCreate{Name: "d", SizeMiB: 1})
	cmd, conv := h.convertCommand(img.ID)
	bucket, key, _ := blob.ParseURL(conv.Dest)
	data := []byte("a small disk, one PUT")
	stored, err := h.blobs.Put(h.ctx, bucket, key, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	wrong := sha([]byte("not what was stored"))
	h.converterEvent(cmd, "converted", img.ID, schemas.ConverterConverted{ImageID: img.ID, Dest: conv.Dest,
		Format: schemas.DiskFormatRaw, VirtualSize: 1 << 20, Size: stored.Size, SHA256: wrong, S3Checksum: stored.S3Checksum})
	ev := h.waitState(img.ID, StateError)
	want := "the converter reported SHA-256 " + wrong + " and S3 checksum " + stored.S3Checksum + " for " + conv.Dest + ", which are not the same digest"
	if ev.Error != want {
		t.Fatalf("error = %q, want %q", ev.Error, want)
	}
}
