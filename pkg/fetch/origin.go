package fetch

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
)

// origin is a remote byte stream that can be reopened at an offset.
type origin interface {
	// open returns the stream from offset on. start is where the body
	// really begins: offset, or 0 when the remote could not resume and
	// the caller must start over. total is the full size, -1 if unknown.
	open(ctx context.Context, offset int64) (body io.ReadCloser, start, total int64, err error)
	String() string
}

// newOrigin picks the origin for src, refusing anything that would read
// the host's own files.
func newOrigin(src string, opts Options) (origin, error) {
	if src == "" {
		return nil, permanentf("empty source; use s3://, http:// or https://")
	}
	if filepath.IsAbs(src) || strings.HasPrefix(src, ".") || !strings.Contains(src, "://") {
		return nil, permanentf("source %q is a local path: a command must not read host files; use s3://, http:// or https://", src)
	}
	u, err := url.Parse(src)
	if err != nil {
		return nil, permanentf("source %q: %v", src, err)
	}
	switch scheme := strings.ToLower(u.Scheme); scheme {
	case "s3":
		if opts.Store == nil {
			return nil, fmt.Errorf("source %q: no object store configured", src)
		}
		return newS3Origin(src, opts.Store)
	case "http", "https":
		if u.Host == "" {
			return nil, permanentf("source %q: no host", src)
		}
		return newHTTPOrigin(u, httpClient(opts.Guard)), nil
	case "file":
		return nil, permanentf("source %q refused: file:// would read host files; use s3://, http:// or https://", src)
	default:
		return nil, permanentf("unsupported source scheme %q; use s3://, http:// or https://", scheme)
	}
}

// Redact drops credentials and query strings (presigned URLs carry
// signatures) from a source before it is shown or logged.
func Redact(src string) string {
	u, err := url.Parse(src)
	if err != nil || u.Scheme == "s3" {
		return src
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
