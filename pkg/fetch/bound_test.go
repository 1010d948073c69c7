package fetch

import (
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// Options.Bound lowers the cap once the head is out: a stream whose head
// says it is small stops soon after, far below MaxBytes.
func TestBoundLowersTheCapFromTheHead(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zw := gzip.NewWriter(w)
		zw.Write([]byte("SMALL-IMAGE-HEADER"))
		zeros := make([]byte, 1<<20)
		for range 512 {
			if _, err := zw.Write(zeros); err != nil {
				return
			}
			served.Add(int64(len(zeros)))
		}
		zw.Close()
	}))
	defer srv.Close()
	opts := fastOpts()
	opts.MaxBytes = 1 << 30
	var seen int
	opts.Bound = func(head []byte) (int64, string) {
		seen = len(head)
		if strings.HasPrefix(string(head), "SMALL-IMAGE-HEADER") {
			return 8 << 20, "the head says 8 MiB"
		}
		return 0, ""
	}
	_, err := File(context.Background(), srv.URL+"/x.gz", filepath.Join(t.TempDir(), "o"), opts)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != 8<<20 || !strings.HasSuffix(err.Error(), "exceeds the limit of 8 MiB (the head says 8 MiB)") {
		t.Fatalf("err = %v, want the bound's LimitError", err)
	}
	if seen != BoundHead {
		t.Errorf("Bound saw %d bytes, want %d", seen, BoundHead)
	}
	if n := served.Load(); n >= 256<<20 {
		t.Errorf("the server produced %d bytes: the cap did not stop the download early", n)
	}
}
