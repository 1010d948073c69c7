package blob

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrExited is WaitLive's error when the server's process ended first.
var ErrExited = errors.New("exited before becoming live")

// WaitLive waits for the MinIO server at endpoint (host:port, plain HTTP)
// that this process started: it polls the liveness probe every 100ms until
// it answers 200 OK, exited closes (ErrExited: the process ended, often
// because its port was taken) or ctx ends (ctx's error, with the last
// probe's failure).
func WaitLive(ctx context.Context, endpoint string, exited <-chan struct{}) error {
	return WaitLiveTLS(ctx, endpoint, nil, exited)
}

// WaitLiveTLS is WaitLive over https trusting the CAs of tlsConfig, or
// over plain HTTP when tlsConfig is nil.
func WaitLiveTLS(ctx context.Context, endpoint string, tlsConfig *tls.Config, exited <-chan struct{}) error {
	url := "http://" + endpoint + "/minio/health/live"
	client := &http.Client{Timeout: 2 * time.Second}
	if tlsConfig != nil {
		url = "https://" + endpoint + "/minio/health/live"
		client.Transport = &http.Transport{TLSClientConfig: tlsConfig}
	}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil && ctx.Err() != nil && last != nil {
			// The deadline cut this request short: the server's last
			// answer says more than the cut.
			return fmt.Errorf("not live: %w (last: %v)", ctx.Err(), last)
		}
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return fmt.Errorf("not live: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
