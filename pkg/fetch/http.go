package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipway/slipway/pkg/netguard"
)

// httpOrigin fetches a URL and resumes it with Range requests guarded by
// If-Range, so a file that changed between attempts is never spliced.
type httpOrigin struct {
	url    *url.URL
	client *http.Client
	// validator is the strong ETag, else Last-Modified, of the version
	// being fetched; "" when the server gives neither.
	validator string
	total     int64
}

// clients holds one client per guard, so connections are pooled across
// fetches.
var clients sync.Map // *netguard.Policy → *http.Client

// httpClient is the client of guard: its transport dials through the
// guard, has no overall timeout (images are large) but bounds connecting
// and waiting for headers; stalls mid-body are caught by the idle watchdog
// of the fetch.
func httpClient(guard *netguard.Policy) *http.Client {
	if c, ok := clients.Load(guard); ok {
		return c.(*http.Client)
	}
	t := guard.Transport().Clone()
	t.TLSHandshakeTimeout = 30 * time.Second
	t.ResponseHeaderTimeout = 60 * time.Second
	c, _ := clients.LoadOrStore(guard, &http.Client{Transport: t, CheckRedirect: netguard.CheckRedirect})
	return c.(*http.Client)
}

func newHTTPOrigin(u *url.URL, c *http.Client) *httpOrigin {
	return &httpOrigin{url: u, client: c, total: -1}
}

func (o *httpOrigin) String() string { return o.url.Redacted() }

func (o *httpOrigin) open(ctx context.Context, offset int64) (io.ReadCloser, int64, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url.String(), nil)
	if err != nil {
		return nil, 0, 0, permanentf("GET %s: %v", o, err)
	}
	// The checksum is of the file's bytes: no transparent gzip.
	req.Header.Set("Accept-Encoding", "identity")
	ranged := offset > 0
	if ranged {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		if o.validator != "" {
			req.Header.Set("If-Range", o.validator)
		}
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return nil, 0, 0, classifyTransportError(o.String(), err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		o.remember(resp)
		o.total = resp.ContentLength
		return resp.Body, 0, o.total, nil
	case resp.StatusCode == http.StatusPartialContent && ranged:
		if o.resumable(resp, offset) {
			return resp.Body, offset, o.total, nil
		}
		resp.Body.Close()
		return o.open(ctx, 0) // the server sent something else: start over
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && ranged:
		resp.Body.Close()
		return o.open(ctx, 0) // the file shrank or changed
	default:
		resp.Body.Close()
		return nil, 0, 0, &HTTPStatusError{URL: o.String(), StatusCode: resp.StatusCode, Status: resp.Status}
	}
}

// remember keeps the validator of the version a full answer carries.
func (o *httpOrigin) remember(resp *http.Response) {
	o.validator = ""
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		o.validator = et // If-Range needs a strong validator
	} else if lm := resp.Header.Get("Last-Modified"); lm != "" {
		o.validator = lm
	}
}

// resumable checks a 206 answer really continues the same file at offset.
func (o *httpOrigin) resumable(resp *http.Response, offset int64) bool {
	start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	if !ok || start != offset {
		return false
	}
	if o.total >= 0 && total >= 0 && total != o.total {
		return false
	}
	if et := resp.Header.Get("ETag"); et != "" && strings.HasPrefix(o.validator, `"`) && et != o.validator {
		return false
	}
	if total >= 0 {
		o.total = total
	}
	return true
}

// parseContentRange parses "bytes <start>-<end>/<total|*>"; total is -1 for *.
func parseContentRange(h string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(h), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, size, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	first, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	total = -1
	if size = strings.TrimSpace(size); size != "*" {
		if total, err = strconv.ParseInt(size, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// classifyTransportError gives a failed request its code (netguard's
// classification): a name that does not resolve, a refused certificate and
// an address or redirect the guard refuses are permanent; everything else
// (connection refused, reset, timeouts, a failed lookup) may heal.
func classifyTransportError(u string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the method and URL
	}
	if refused, ok := netguard.AsRefused(err); ok {
		err = refused // its own words, not the dialer's retelling
	}
	return withCode(netguard.FailureCode(err), fmt.Errorf("GET %s: %w", u, err))
}
