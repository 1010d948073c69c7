package blob_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
)

func TestWaitLive(t *testing.T) {
	var probes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/minio/health/live" || probes.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	endpoint := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	if err := blob.WaitLive(ctx, endpoint, nil); err != nil || probes.Load() != 3 {
		t.Fatalf("WaitLive = %v after %d probes, want nil after 3", err, probes.Load())
	}

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	endpoint = strings.TrimPrefix(down.URL, "http://")
	exited := make(chan struct{})
	close(exited)
	if err := blob.WaitLive(ctx, endpoint, exited); !errors.Is(err, blob.ErrExited) {
		t.Fatalf("WaitLive with the process gone = %v, want ErrExited", err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err := blob.WaitLive(short, endpoint, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("WaitLive on a server never live = %v, want the deadline and the last 503", err)
	}
}
