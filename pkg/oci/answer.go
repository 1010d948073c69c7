package oci

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
)

// blobAnswer is what the registry's answer to one blob download looked like
// on the wire: its Content-Length and how its body ended. go-containerregistry
// reports a Content-Length other than the expected size and its own
// verification failures as plain text errors; the pull decides from these
// facts instead of reading that text.
type blobAnswer struct {
	mu            sync.Mutex
	contentLength int64 // of the last 200 answer; -1 when unknown
	ended         bool  // its body reached a clean EOF
}

type blobAnswerKey struct{}

// watchBlob returns ctx carrying a fresh blobAnswer that the transport
// (recordAnswers) fills for the requests made with ctx. The blob's GET is
// the last request of a download (token requests come before it), so the
// answer recorded last is the blob's.
func watchBlob(ctx context.Context) (context.Context, *blobAnswer) {
	a := &blobAnswer{contentLength: -1}
	return context.WithValue(ctx, blobAnswerKey{}, a), a
}

// sizeDiffers reports whether the registry announced a length other than
// want.
func (a *blobAnswer) sizeDiffers(want int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.contentLength >= 0 && a.contentLength != want
}

// bodyEnded reports whether the body arrived whole (a clean EOF): an error
// while reading it was then not the transport's.
func (a *blobAnswer) bodyEnded() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ended
}

// recordAnswers wraps base so that requests whose context carries a
// blobAnswer (watchBlob) record their 200 answers in it.
type recordAnswers struct{ base http.RoundTripper }

func (t recordAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	a, ok := req.Context().Value(blobAnswerKey{}).(*blobAnswer)
	if err != nil || !ok || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	a.mu.Lock()
	a.contentLength, a.ended = resp.ContentLength, false
	a.mu.Unlock()
	resp.Body = &watchedBody{ReadCloser: resp.Body, a: a}
	return resp, nil
}

type watchedBody struct {
	io.ReadCloser
	a *blobAnswer
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.a.mu.Lock()
		b.a.ended = true
		b.a.mu.Unlock()
	}
	return n, err
}
