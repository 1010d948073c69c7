package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

func partSum(data []byte) string {
	s := sha256.Sum256(data)
	return base64.StdEncoding.EncodeToString(s[:])
}

// sendPart PUTs data to a presigned URL as the console's page does.
func sendPart(t *testing.T, url string, data []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(data))
	req.Header.Set("x-amz-checksum-sha256", partSum(data))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("ETag")
}

// TestBrowserUploadIsTheUsersOwn: with the catalog's own scoped S3
// identity, alice uploads a file in two presigned parts to a key the
// catalog derives under her prefix, lists them, completes it and imports
// it; a name that is not one file name is refused; bob can neither list,
// sign, complete nor abort her upload, nor reach it through a path of
// his own; a completed upload is forgotten; an upload left incomplete
// past the expiry is aborted by the sweep, and a recent one is kept.
func TestBrowserUploadIsTheUsersOwn(t *testing.T) {
	h := newHarness(t)
	h.withOwnS3Identity()
	alice := h.newUser("alice", "")
	bob := h.newUser("bob", "")

	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadStart, schemas.CatalogUploadStartRequest{Name: "..", Size: 1}); bus.ErrorCode(err) != bus.CodeInvalid || !strings.Contains(err.Error(), "file name") {
		t.Errorf(`upload-start of "..": %v, want invalid naming the file name`, err)
	}
	data := bytes.Repeat([]byte("slipway!"), (blob.MinClientPartSize+4096)/8)
	st, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadStart, schemas.CatalogUploadStartRequest{Name: "disk.raw", Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cfg.locations().CheckStaged(st.Path, "alice"); err != nil || st.PartSize != blob.MinClientPartSize || st.Parts != 2 || !strings.HasSuffix(st.Path, "/disk.raw") {
		t.Fatalf("upload-start: %+v (%v)", st, err)
	}
	ref := schemas.UploadRef{Path: st.Path, UploadID: st.UploadID}
	parts := [][]byte{data[:st.PartSize], data[st.PartSize:]}
	var sums []schemas.UploadPartSum
	for i, p := range parts {
		sums = append(sums, schemas.UploadPartSum{Number: int64(i + 1), ChecksumSHA256: partSum(p)})
	}
	signed, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadPresign, schemas.CatalogUploadPresignRequest{Path: st.Path, UploadID: st.UploadID, Parts: sums, ExpiresS: 300})
	if err != nil || len(signed.Urls) != 2 {
		t.Fatalf("upload-presign: %+v, %v", signed, err)
	}
	var done []schemas.UploadPart
	for i, u := range signed.Urls {
		code, etag := sendPart(t, u.URL, parts[i])
		if code != http.StatusOK {
			t.Fatalf("PUT part %d: %d", u.Number, code)
		}
		done = append(done, schemas.UploadPart{Number: u.Number, Etag: etag, ChecksumSHA256: sums[i].ChecksumSHA256})
	}

	// bob reaches none of it.
	if _, err := bus.Ask(h.ctx, bob, schemas.QryCatalogUploadParts, ref); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("bob lists alice's parts: %v, want forbidden", err)
	}
	if _, err := bus.Ask(h.ctx, bob, schemas.QryCatalogUploadPresign, schemas.CatalogUploadPresignRequest{Path: st.Path, UploadID: st.UploadID, Parts: sums}); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("bob signs alice's parts: %v, want forbidden", err)
	}
	if _, err := bus.Ask(h.ctx, bob, schemas.QryCatalogUploadComplete, schemas.CatalogUploadCompleteRequest{Path: st.Path, UploadID: st.UploadID, Parts: done}); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("bob completes alice's upload: %v, want forbidden", err)
	}
	if _, err := bus.Ask(h.ctx, bob, schemas.QryCatalogUploadAbort, ref); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("bob aborts alice's upload: %v, want forbidden", err)
	}
	bobs, err := bus.Ask(h.ctx, bob, schemas.QryCatalogUploadStart, schemas.CatalogUploadStartRequest{Name: "disk.raw", Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Ask(h.ctx, bob, schemas.QryCatalogUploadParts, schemas.UploadRef{Path: bobs.Path, UploadID: st.UploadID}); !bus.IsNotFound(err) {
		t.Errorf("bob's path with alice's upload ID: %v, want not found", err)
	}

	listed, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadParts, ref)
	if err != nil || len(listed.Parts) != 2 || listed.Parts[1].Size != int64(len(parts[1])) || listed.Parts[0].ChecksumSHA256 != sums[0].ChecksumSHA256 {
		t.Fatalf("alice's parts: %+v, %v", listed, err)
	}
	bad := append([]schemas.UploadPart{}, done...)
	bad[1].ChecksumSHA256 = sums[0].ChecksumSHA256
	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadComplete, schemas.CatalogUploadCompleteRequest{Path: st.Path, UploadID: st.UploadID, Parts: bad}); err == nil {
		t.Error("completed with part 2 under part 1's checksum")
	}
	fin, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadComplete, schemas.CatalogUploadCompleteRequest{Path: st.Path, UploadID: st.UploadID, Parts: done})
	if err != nil || fin.Size != int64(len(data)) || !strings.HasSuffix(fin.S3Checksum, "-2") {
		t.Fatalf("upload-complete: %+v, %v", fin, err)
	}
	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadParts, ref); !bus.IsNotFound(err) {
		t.Errorf("parts of a completed upload: %v, want not found", err)
	}
	img := h.importAs(alice, "from-browser", st.Path, data)
	if img.User != "alice" {
		t.Errorf("imported image owned by %q", img.User)
	}

	// The sweep: an upload started two days ago is aborted, a new one kept.
	old, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadStart, schemas.CatalogUploadStartRequest{Name: "old.raw", Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	_, oldKey, _ := blob.ParseURL(old.Path)
	rec, _ := json.Marshal(pendingUpload{User: "alice", Key: oldKey, UploadID: old.UploadID, Started: time.Now().Add(-48 * time.Hour)})
	if _, err := h.svc.meta.Put(h.ctx, uploadRecordKey(oldKey), rec); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.sweepUploads(h.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.blobs.ListParts(h.ctx, h.cfg.UploadBucket, oldKey, old.UploadID); !blob.IsNotFound(err) {
		t.Errorf("S3 still has the expired upload: %v", err)
	}
	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUploadParts, schemas.UploadRef{Path: old.Path, UploadID: old.UploadID}); !bus.IsNotFound(err) {
		t.Errorf("the expired upload is still known: %v", err)
	}
	if _, err := bus.Ask(h.ctx, bob, schemas.QryCatalogUploadParts, schemas.UploadRef{Path: bobs.Path, UploadID: bobs.UploadID}); err != nil {
		t.Errorf("bob's recent upload did not survive the sweep: %v", err)
	}
	if _, err := bus.Ask(h.ctx, bob, schemas.QryCatalogUploadAbort, schemas.UploadRef{Path: bobs.Path, UploadID: bobs.UploadID}); err != nil {
		t.Errorf("bob aborts his own upload: %v", err)
	}
	if got, err := testenv.ReadObject(h.ctx, h.blobs, h.cfg.UploadBucket, oldKey); err == nil {
		t.Errorf("an aborted upload left an object: %q", got)
	}
}
