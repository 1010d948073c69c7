// Package indexfile holds what every marketplace index reader of market-lxc
// shares: fetching an index file with a size cap, naming the file and field
// an error is about, resolving a path from an index against the endpoint
// without letting it escape, checking hex digests, and checking a file
// against its detached signature.
//
// Index files are untrusted: a path from an index becomes a URL only through
// Resolve, and a digest becomes a checksum only through Hex.
package indexfile

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/slipway/slipway/services/market-lxc/pgpverify"
)

// Error is an error about one field of one marketplace file.
type Error struct {
	File  string // the file, e.g. "streams/v1/images.json" or a URL
	Field string // the field or record, e.g. `products["x"].versions`; may be empty
	Err   error
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.File, e.Field, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf is an *Error about field of file.
func Errorf(file, field, format string, args ...any) error {
	return &Error{File: file, Field: field, Err: fmt.Errorf(format, args...)}
}

// ErrTooLarge is wrapped by Get when a file is larger than its cap.
var ErrTooLarge = errors.New("file larger than its cap")

// StatusError is a listing answered with a status other than 200.
type StatusError struct {
	URL    string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %d %s", e.URL, e.Status, http.StatusText(e.Status))
}

// Get fetches rawURL with client and returns its body, at most max bytes:
// a longer body is an error wrapping ErrTooLarge, never a truncated file.
// header (may be nil) is added to the request, e.g. a User-Agent.
func Get(ctx context.Context, client *http.Client, rawURL string, max int64, header http.Header) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{URL: rawURL, Status: resp.StatusCode}
	}
	if resp.ContentLength > max {
		return nil, &Error{File: rawURL, Err: fmt.Errorf("%w: %d bytes, cap %d", ErrTooLarge, resp.ContentLength, max)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", rawURL, err)
	}
	if int64(len(body)) > max {
		return nil, &Error{File: rawURL, Err: fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)}
	}
	return body, nil
}

// Base parses an endpoint URL: http or https, a host, no user info, query or
// fragment. The path is made to end in "/" so that Resolve stays under it.
func Base(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("endpoint %q: scheme must be http or https", endpoint)
	case u.Host == "":
		return nil, fmt.Errorf("endpoint %q: no host", endpoint)
	case u.User != nil:
		return nil, fmt.Errorf("endpoint %q: user info is not allowed", endpoint)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("endpoint %q: query and fragment are not allowed", endpoint)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		u.RawPath = ""
	}
	return u, nil
}

// Resolve is the URL of the index path p under base. p must be a plain
// relative path: no scheme, host, query or fragment, no "." or ".." segment,
// no backslash, percent sign or control character, no empty segment. One
// leading "/" is taken as relative to base (the LXC index writes its paths
// that way, simplestreams without). The result is always under base's path.
// A colon is allowed: simplestreams build keys contain one ("20241205_05:24").
func Resolve(base *url.URL, p string) (string, error) {
	rel := strings.TrimPrefix(p, "/")
	if err := checkPath(rel); err != nil {
		return "", fmt.Errorf("path %q: %w", p, err)
	}
	u := *base
	u.Path = base.Path + rel
	u.RawPath = ""
	return u.String(), nil
}

func checkPath(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	if len(p) > 1024 {
		return errors.New("longer than 1024 bytes")
	}
	if strings.Contains(p, "://") || strings.HasPrefix(p, "/") {
		return errors.New("absolute URLs are not allowed, only paths under the endpoint")
	}
	for _, r := range p {
		switch {
		case r < 0x20 || r == 0x7f:
			return errors.New("control character")
		case r == '\\' || r == '%' || r == '?' || r == '#':
			return fmt.Errorf("character %q not allowed", r)
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return errors.New("empty segment (absolute or \"//\")")
		case ".", "..":
			return fmt.Errorf("segment %q escapes the endpoint", seg)
		}
	}
	return nil
}

// Hex checks that s is a lower- or upper-case hex digest of size bytes and
// returns it in lower case.
func Hex(s string, size int) (string, error) {
	if len(s) != 2*size {
		return "", fmt.Errorf("digest %q: %d hex digits, want %d", short(s), len(s), 2*size)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("digest %q: not hex", short(s))
	}
	return strings.ToLower(s), nil
}

// short cuts a hostile value for an error message.
func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Short cuts a value taken from an index for an error message.
func Short(s string) string { return short(s) }

// SumLine parses one line of sha256sum/sha512sum output, "<hex>  <name>" or
// "<hex> *<name>", leading blanks allowed, for a digest of size bytes. The
// name must be a plain file name (no "/").
func SumLine(line string, size int) (sum, name string, ok bool) {
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", "", false
	}
	sum, err := Hex(f[0], size)
	if err != nil {
		return "", "", false
	}
	name = strings.TrimPrefix(f[1], "*")
	if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return "", "", false
	}
	return sum, name, true
}

// JSONError keeps a decoder error short and names the field of a type
// error.
func JSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q: %s where %s is expected", te.Field, te.Value, te.Type)
	}
	return err
}

// GetUnder parses endpoint (Base) and fetches the file at path under it
// (Resolve, Get). It returns the parsed endpoint for resolving the paths
// the file names.
func GetUnder(ctx context.Context, client *http.Client, endpoint, path string, max int64, header http.Header) (*url.URL, []byte, error) {
	base, err := Base(endpoint)
	if err != nil {
		return nil, nil, err
	}
	u, err := Resolve(base, path)
	if err != nil {
		return nil, nil, err
	}
	data, err := Get(ctx, client, u, max, header)
	return base, data, err
}

// CheckDetached fetches fileURL+".asc" (at most max bytes), the detached
// signature of fileURL, and checks data, fileURL's content, against it with
// keyring. A bad signature is an *Error naming the .asc file.
func CheckDetached(ctx context.Context, client *http.Client, keyring *pgpverify.Keyring, fileURL string, data []byte, max int64) error {
	sigURL := fileURL + ".asc"
	sig, err := Get(ctx, client, sigURL, max, nil)
	if err != nil {
		return err
	}
	if _, err := keyring.Detached(bytes.NewReader(data), sig); err != nil {
		return &Error{File: sigURL, Err: err}
	}
	return nil
}
