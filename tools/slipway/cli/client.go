package cli

// The CLI's connections: to NATS for every command, to S3 for uploads
// and exports, and the helpers that run a command with one.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/tlsca"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/up"
)

// connectTimeout bounds how long a command waits for NATS: a person at a
// terminal wants to hear that nothing runs, not a silent retry loop.
const connectTimeout = 5 * time.Second

// client is what a command that only talks over the bus needs: where
// NATS is, the user it shows as owner, and the streams to print on.
type client struct {
	natsURL string
	// creds is the NATS credentials file the CLI authenticates with
	// (--creds, SLIPWAY_CREDS, else slipway up's oneadmin.creds when it
	// is in the default data directory).
	creds string
	// ca is the PEM file of the CA trusted for NATS and S3 over TLS
	// (--ca, SLIPWAY_CA, else slipway up --tls's in the default data
	// directory).
	ca     string
	prefix string
	user   string
	io     streams
}

// connect opens the CLI's bus connection (ce-source /slipway/cli). Its
// callers close it with CloseNow: a command has its answers by the time it
// ends, so draining would only delay its exit.
func (c *client) connect(ctx context.Context) (*bus.Bus, error) {
	b, err := bus.Connect(ctx, bus.Config{
		URL:            c.natsURL,
		Prefix:         c.prefix,
		Service:        "cli",
		Credentials:    c.creds,
		CAFile:         c.ca,
		Sender:         c.sender(),
		ConnectTimeout: connectTimeout,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		if errors.Is(err, bus.ErrUntrusted) {
			return nil, fmt.Errorf("NATS at %s presents a certificate this CLI does not trust: give its CA with --ca or SLIPWAY_CA (slipway up --tls writes %s): %w", c.natsURL, filepath.Join(up.DefaultDataDir, up.TLSDir, tlsca.CertFile), err)
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthRevoked) {
			return nil, fmt.Errorf("NATS at %s refused %s (give a credentials file with --creds or SLIPWAY_CREDS; slipway up writes oneadmin's into its data directory): %w", c.natsURL, c.credsName(), err)
		}
		return nil, fmt.Errorf("cannot reach NATS at %s (is `slipway up` running? set --nats-url or SLIPWAY_NATS_URL): %w", c.natsURL, err)
	}
	return b, nil
}

// sender is who the CLI says it is when it has no credentials, to a
// server that authenticates no one (every client can do anything there):
// SLIPWAY_USER, default oneadmin. With credentials the server decides,
// and the name comes from them.
func (c *client) sender() string {
	if c.creds != "" {
		return ""
	}
	return c.user
}

// credsName says whose credentials the CLI used, for errors.
func (c *client) credsName() string {
	if c.creds == "" {
		return "a client without credentials"
	}
	return "the credentials " + c.creds
}

// defaultCreds is where the CLI looks for credentials when neither --creds
// nor SLIPWAY_CREDS says: oneadmin's, in slipway up's default data
// directory, as kubectl looks for its kubeconfig.
func defaultCreds() string {
	p := filepath.Join(up.DefaultDataDir, up.CredentialsFile)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// defaultCA is slipway up --tls's CA in its default data directory, when
// it is there.
func defaultCA() string {
	p := filepath.Join(up.DefaultDataDir, up.TLSDir, tlsca.CertFile)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

func (g *globals) blobConfig() blob.Config {
	return blob.Config{
		Endpoint:  g.s3Endpoint,
		AccessKey: g.s3Access,
		SecretKey: g.s3Secret,
		Secure:    g.s3Secure,
		CAFile:    g.ca,
		Region:    env("SLIPWAY_S3_REGION", ""),
	}
}

// withBus runs f with a connection to NATS.
func (c *client) withBus(ctx context.Context, f func(*bus.Bus) error) error {
	b, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer b.CloseNow()
	return f(b)
}

// busRunner runs a function with a bus connection: a client, or the
// globals that carry one.
type busRunner interface {
	withBus(ctx context.Context, f func(*bus.Bus) error) error
}

// withFound runs f with a bus and what find resolves ref (an ID or a
// name) to: an image, a marketplace, a VM, a template.
func withFound[T any](ctx context.Context, g busRunner, find func(context.Context, *bus.Bus, string) (T, error),
	ref string, f func(*bus.Bus, T) error) error {
	return g.withBus(ctx, func(b *bus.Bus) error {
		v, err := find(ctx, b, ref)
		if err != nil {
			return err
		}
		return f(b, v)
	})
}

// ask asks q's endpoint (bus.Ask); what names the request in an error
// other than the service's own answer (queryError).
func ask[Req, Rep any](ctx context.Context, b *bus.Bus, q schemas.Qry[Req, Rep], req Req, what string) (Rep, error) {
	rep, err := bus.Ask(ctx, b, q, req)
	if err != nil {
		return rep, queryError(err, what)
	}
	return rep, nil
}

// call sends service's command verb and waits, up to timeout, for the
// first of the events in accept; a failed event becomes the service's own
// message, silence says the service may not be running.
func call(ctx context.Context, b *bus.Bus, service, verb string, data any, accept []string, timeout time.Duration) (*bus.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := b.Call(ctx, service, verb, data, accept)
	switch {
	case err == nil:
		return m, nil
	case bus.IsCallError(err):
		err = callFailure(err)
	case ctx.Err() != nil:
		err = fmt.Errorf("no answer from the %s in %s (is it running?)", service, timeout)
	}
	return m, err
}

// decoded is the answering event m decoded into a T, or err.
func decoded[T any](m *bus.Msg, err error) (T, error) {
	var v T
	if err == nil {
		err = m.Decode(&v)
	}
	return v, err
}

// queryError turns a query's error reply into its description.
func queryError(err error, what string) error {
	var qe *bus.QueryError
	if errors.As(err, &qe) && qe.Code != bus.CodeUnavailable {
		return errors.New(qe.Description)
	}
	return fmt.Errorf("%s: %w", what, err)
}
