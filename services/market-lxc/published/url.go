package published

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/slipway/slipway/services/market-lxc/indexfile"
)

// ParseBaseURL checks a marketplace's BASE_URL as any index endpoint is
// checked (indexfile.Base: http or https, a host, no user information,
// query or fragment; the path made to end in '/' so that the documents
// resolve below it).
func ParseBaseURL(raw string) (*url.URL, error) {
	u, err := indexfile.Base(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("BASE_URL: %w", err)
	}
	return u, nil
}

// Resolve returns the absolute URL of rel, a path this package derived
// (IndexFile, BlobPath), under base (from ParseBaseURL). It refuses a
// result on another scheme or host or outside base's path, which a
// derived path never gives: the check keeps it that way.
func Resolve(base *url.URL, rel string) (string, error) {
	ref, err := url.Parse(rel)
	if err != nil {
		return "", invalid("path %q: %v", rel, err)
	}
	if ref.IsAbs() || ref.Host != "" || strings.HasPrefix(rel, "/") {
		return "", invalid("path %q: must be relative to the marketplace base", rel)
	}
	u := base.ResolveReference(ref)
	if u.Scheme != base.Scheme || u.Host != base.Host || !strings.HasPrefix(u.Path, base.Path) ||
		strings.Contains(u.Path[len(base.Path):], "..") {
		return "", invalid("path %q leaves the marketplace base %s", rel, base)
	}
	return u.String(), nil
}

// Entry is an app as a lister returns it: its metadata and where its blob
// is (an http(s) URL or an s3:// URL).
type Entry struct {
	App
	BlobURL string
}

// VerifiedReader reads a's blob from r and fails, instead of ending, when
// the data is longer or shorter than a.Size or its SHA-256 is not a.SHA256.
// A consumer that reads to io.EOF has read exactly the published bytes.
// Closing it closes r.
func VerifiedReader(ctx context.Context, r io.ReadCloser, a App) io.ReadCloser {
	return &verified{c: NewCounter(ctx, io.LimitReader(r, a.Size+1)), app: a, Closer: r}
}

type verified struct {
	c   *Counter
	app App
	io.Closer
}

func (v *verified) Read(p []byte) (int, error) {
	n, err := v.c.Read(p)
	if v.c.n > v.app.Size {
		return n, fmt.Errorf("app %s: blob is longer than its %d bytes", v.app.Name, v.app.Size)
	}
	if err == io.EOF {
		if cerr := v.c.Check(v.app); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}
