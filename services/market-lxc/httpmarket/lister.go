package httpmarket

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/slipway/slipway/services/market-lxc/published"
)

// Lister reads a private marketplace over HTTP: BASE_URL/index.json, and
// the blobs below BASE_URL. Anything that serves the layout works: a
// Publisher's PUBLIC_DIR behind a web server, or an S3 bucket published
// for anonymous reads.
type Lister struct {
	base   *url.URL
	client *http.Client
}

// NewLister reads the marketplace at baseURL through client (which sets
// the timeouts, proxies and trusted CAs; nil is http.DefaultClient).
func NewLister(baseURL string, client *http.Client) (*Lister, error) {
	base, err := published.ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &Lister{base: base, client: client}, nil
}

// List fetches and checks the index (at most published.MaxIndexBytes) and
// returns every app with the absolute URL of its blob, derived from its
// name and format below BASE_URL.
func (l *Lister) List(ctx context.Context) ([]published.Entry, error) {
	indexURL, err := published.Resolve(l.base, published.IndexFile)
	if err != nil {
		return nil, err
	}
	body, err := l.get(ctx, indexURL)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	ix, err := published.DecodeIndex(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", indexURL, err)
	}
	entries := make([]published.Entry, 0, len(ix.Apps))
	for _, a := range ix.Apps {
		u, err := l.BlobURL(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", indexURL, err)
		}
		entries = append(entries, published.Entry{App: a, BlobURL: u})
	}
	return entries, nil
}

// BlobURL is the absolute URL of a's blob below BASE_URL.
func (l *Lister) BlobURL(a published.App) (string, error) {
	if err := a.Validate(); err != nil {
		return "", err
	}
	return published.Resolve(l.base, published.BlobPath(a.Name, a.Format))
}

// Open downloads a's blob. The reader fails rather than ending when the
// bytes are not the published size and SHA-256 (published.VerifiedReader).
func (l *Lister) Open(ctx context.Context, a published.App) (io.ReadCloser, error) {
	u, err := l.BlobURL(a)
	if err != nil {
		return nil, err
	}
	body, err := l.get(ctx, u)
	if err != nil {
		return nil, err
	}
	return published.VerifiedReader(ctx, body, a), nil
}

// get GETs u and returns the body of a 200 answer.
func (l *Lister) get(ctx context.Context, u string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("marketplace: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("marketplace: GET %s: %s", u, resp.Status)
	}
	// A redirect may move to https on the same host, not elsewhere: the
	// marketplace is what BASE_URL names.
	if final := resp.Request.URL; final.Host != l.base.Host || (final.Scheme != l.base.Scheme && final.Scheme != "https") {
		resp.Body.Close()
		return nil, fmt.Errorf("marketplace: GET %s was redirected to %s, outside BASE_URL %s", u, final.Redacted(), l.base)
	}
	return resp.Body, nil
}
