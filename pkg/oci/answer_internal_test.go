package oci

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestBlobAnswerRecordsTheWire: the transport records the announced length
// and whether the body arrived whole, for the requests of a watched
// context only; blobFetchError calls a length other than the manifest's a
// size mismatch from that record, not from an error's text.
func TestBlobAnswerRecordsTheWire(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cut" {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte("only part"))
			panic(http.ErrAbortHandler) // the connection breaks mid-body
		}
		_, _ = io.WriteString(w, "twelve bytes")
	}))
	defer srv.Close()
	client := &http.Client{Transport: recordAnswers{http.DefaultTransport}}
	get := func(ctx context.Context, path string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}

	ctx, whole := watchBlob(context.Background())
	if err := get(ctx, "/whole"); err != nil {
		t.Fatal(err)
	}
	if !whole.bodyEnded() || whole.sizeDiffers(12) || !whole.sizeDiffers(13) {
		t.Errorf("whole body: ended %v, length %d", whole.bodyEnded(), whole.contentLength)
	}
	ref, _ := name.NewDigest("registry.test/app@sha256:" + strings.Repeat("a", 64))
	err := blobFetchError(errors.New("Content-Length header 12 does not match expected size 13"), ref, credentials{}, v1.Descriptor{Size: 13}, whole)
	if !strings.HasPrefix(err.Error(), "size mismatch: ") {
		t.Errorf("blobFetchError = %v, want a size mismatch", err)
	}

	ctx, cut := watchBlob(context.Background())
	if err := get(ctx, "/cut"); err == nil {
		t.Fatal("a cut body read without error")
	}
	if cut.bodyEnded() {
		t.Error("a cut body counts as whole")
	}

	// A request without a watched context is left alone.
	if err := get(context.Background(), "/whole"); err != nil {
		t.Fatal(err)
	}
}
