// Package bus is Slipway's JetStream plumbing: the streams of commands,
// events and dead letters, publishing with CloudEvents envelopes, durable
// consumers with retries, heartbeats and dead-lettering, and request/reply
// queries through NATS micro services. Subject layout: docs/design.md.
//
// Queries follow the contract in package schemas: [Bus.Serve] serves only
// endpoints that have a request and a reply schema, checks every request
// before its handler runs and every reply before it leaves; [Bus.Query]
// checks the reply again before decoding it, whoever sent it.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/tlsca"
	"github.com/slipway/slipway/schemas"
)

// Defaults of Config.
const (
	DefaultPrefix      = "slipway"
	DefaultEventMaxAge = 30 * 24 * time.Hour
	// duplicateWindow bounds how long JetStream remembers a Nats-Msg-Id:
	// a retried saga step within it is dropped.
	duplicateWindow = 2 * time.Minute
)

// Config tells a Bus where to connect and who it is.
type Config struct {
	URL string
	// Prefix of every subject and stream; default "slipway".
	Prefix string
	// Service is this process's service name: ce-source "/slipway/<service>",
	// durable name of its command consumer, micro service name.
	Service string
	// Credentials is a NATS credentials file (a user JWT and its seed,
	// package identity): who the server authenticates this connection as.
	// Empty connects without (a server without authentication).
	Credentials string
	// CAFile is a PEM file of the certificate authorities trusted for a
	// server that speaks TLS (tls:// URLs, or a server that requires it),
	// instead of the system's: slipway up --tls and compose make their own
	// CA (package tlsca). Empty trusts the system's roots.
	CAFile string
	// Sender is who this connection authenticates as: the last token of
	// the commands it sends and the queries it asks (schemas.Sender), and
	// its reply inbox (schemas.InboxPrefix). Default: the name in
	// Credentials' JWT, else Service. The server refuses any other.
	Sender string
	// Replicas of streams and KV buckets; default 1.
	Replicas int
	// EventMaxAge is how long events are kept; default 30 days.
	EventMaxAge time.Duration
	Logger      *slog.Logger
	// ConnectTimeout bounds how long Connect retries an unreachable server;
	// 0 retries until ctx is done.
	ConnectTimeout time.Duration
}

func (c *Config) defaults() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Service == "" {
		return errors.New("bus: Config.Service is empty: every process needs a service name")
	}
	if !validToken(c.Service) {
		return fmt.Errorf("bus: service name %q must be one subject token without '.', '*', '>' or spaces", c.Service)
	}
	if c.Sender == "" && c.Credentials != "" {
		name, err := CredentialsName(c.Credentials)
		if err != nil {
			return err
		}
		c.Sender = name
	}
	if c.Sender == "" {
		c.Sender = c.Service
	}
	if !validToken(c.Sender) {
		return fmt.Errorf("bus: sender %q must be one subject token without '.', '*', '>' or spaces", c.Sender)
	}
	for _, tok := range strings.Split(c.Prefix, ".") {
		if !validToken(tok) {
			return fmt.Errorf("bus: prefix %q is not a valid subject prefix", c.Prefix)
		}
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.EventMaxAge <= 0 {
		c.EventMaxAge = DefaultEventMaxAge
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func validToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n/\\")
}

// Bus is a connection to NATS with Slipway's subject and stream layout.
type Bus struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg Config
	log *slog.Logger
}

// Connect dials cfg.URL, retrying until the server answers (or ctx is done
// or cfg.ConnectTimeout passes), with reconnects forever once connected.
func Connect(ctx context.Context, cfg Config, opts ...nats.Option) (*Bus, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	}
	log := cfg.Logger
	// A CA file that cannot be read fails now: no retry would fix it.
	tlsOpt, err := trust(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	all := append([]nats.Option{
		nats.Name("slipway-" + cfg.Service),
		nats.CustomInboxPrefix(schemas.InboxPrefix(cfg.Sender)),
		credentials(cfg.Credentials),
		tlsOpt,
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("bus: reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
	}, opts...)
	delay := 200 * time.Millisecond
	for {
		nc, err := nats.Connect(cfg.URL, all...)
		if err == nil {
			b, err := New(nc, cfg)
			if err != nil {
				nc.Close()
			}
			return b, err
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			// Retrying cannot make the server take these credentials.
			return nil, fmt.Errorf("bus: connect to %s as %s: %w", cfg.URL, cfg.Sender, err)
		}
		if tlsca.IsUntrusted(err) {
			return nil, fmt.Errorf("bus: connect to %s: %w: %w", cfg.URL, ErrUntrusted, err)
		}
		log.Warn("bus: NATS not reachable, retrying", "url", cfg.URL, "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: connect to %s: %w (last error: %v)", cfg.URL, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// credentials authenticates with the credentials file at path, if any.
func credentials(path string) nats.Option {
	if path == "" {
		return func(*nats.Options) error { return nil }
	}
	return nats.UserCredentials(path)
}

// ErrUntrusted is Connect's error when the server's TLS certificate does
// not verify against the trusted authorities (Config.CAFile).
var ErrUntrusted = errors.New("the server's TLS certificate is not signed by a trusted CA (give its CA: SLIPWAY_CA)")

// trust makes the connection verify a TLS server against the CAs in file.
// Only the roots are set, not Secure: a server that requires TLS gets it,
// and one without TLS is still reached (nats:// to a plain server).
func trust(file string) (nats.Option, error) {
	if file == "" {
		return func(*nats.Options) error { return nil }, nil
	}
	cfg, err := tlsca.ClientConfig(file)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	return func(o *nats.Options) error {
		o.TLSConfig = cfg
		return nil
	}, nil
}

// CredentialsName is the name of the user a NATS credentials file
// authenticates: the name in its JWT, which package identity sets to the
// principal's subject token.
func CredentialsName(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("bus: credentials: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		return "", fmt.Errorf("bus: credentials %s: %w", path, err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return "", fmt.Errorf("bus: credentials %s: %w", path, err)
	}
	return claims.Name, nil
}

// New wraps an existing connection. Close drains it.
func New(nc *nats.Conn, cfg Config) (*Bus, error) {
	if nc == nil {
		return nil, errors.New("bus: nil NATS connection")
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	return &Bus{nc: nc, js: js, cfg: cfg, log: cfg.Logger.With("service", cfg.Service)}, nil
}

// Close drains the connection and waits until it is closed: subscriptions
// handle what they hold and pending publishes are flushed first. Stop the
// consumers before, so their handlers can still ack.
func (b *Bus) Close() {
	if err := b.nc.Drain(); err != nil {
		b.nc.Close()
		return
	}
	// Drain is asynchronous; nats.Conn offers no way to wait on it other
	// than its closed handler, which belongs to whoever dialled.
	deadline := time.Now().Add(b.nc.Opts.DrainTimeout + time.Second)
	for !b.nc.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	b.nc.Close()
}

// CloseNow ends a client's connection without draining it: what it
// published is flushed to the server first, and messages still on their
// way to its subscriptions are dropped. It is for a command-line client,
// which has its last answer by then and consumes nothing that must be
// finished; Close's drain costs such a client at least one of nats.go's
// 10 ms polling steps on every command.
func (b *Bus) CloseNow() {
	_ = b.nc.FlushTimeout(closeNowFlush)
	b.nc.Close()
}

// closeNowFlush bounds CloseNow's flush: a server that does not answer by
// then gets the connection closed anyway.
const closeNowFlush = 5 * time.Second

// Conn returns the NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream returns the JetStream context.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Prefix returns the subject prefix.
func (b *Bus) Prefix() string { return b.cfg.Prefix }

// Sender is who this bus sends commands and asks queries as.
func (b *Bus) Sender() string { return b.cfg.Sender }

// Service returns this process's service name.
func (b *Bus) Service() string { return b.cfg.Service }

// Logger returns the bus logger.
func (b *Bus) Logger() *slog.Logger { return b.log }

// CommandStream, EventStream and DeadLetterStream name this bus's three
// streams.
func (b *Bus) CommandStream() string    { return schemas.CommandStream(b.cfg.Prefix) }
func (b *Bus) EventStream() string      { return schemas.EventStream(b.cfg.Prefix) }
func (b *Bus) DeadLetterStream() string { return schemas.DeadLetterStream(b.cfg.Prefix) }

// CommandSubject is "<prefix>.cmd.<service>.<verb>.<sender>", this bus's
// sender last.
func (b *Bus) CommandSubject(service, verb string) string {
	return b.cfg.Prefix + ".cmd." + service + "." + verb + "." + b.cfg.Sender
}

// CommandFilter matches every command of service from anyone:
// "<prefix>.cmd.<service>.>".
func (b *Bus) CommandFilter(service string) string {
	return b.cfg.Prefix + ".cmd." + service + ".>"
}

// EventSubject is "<prefix>.evt.<service>.<event>.<id>".
func (b *Bus) EventSubject(service, event, id string) string {
	return b.cfg.Prefix + ".evt." + service + "." + event + "." + id
}

// DeadLetterSubject is "<prefix>.dlq.<stream>.<consumer>".
func (b *Bus) DeadLetterSubject(stream, consumer string) string {
	return b.cfg.Prefix + ".dlq." + stream + "." + consumer
}

// QuerySubject is "<prefix>.api.<service>.<endpoint>.<sender>", this bus's
// sender last.
func (b *Bus) QuerySubject(service, endpoint string) string {
	return b.cfg.Prefix + ".api." + service + "." + endpoint + "." + b.cfg.Sender
}

// Setup creates or updates the command, event and dead-letter streams. It
// is idempotent, so every service runs it at start; a stream that is
// already as wanted is only read (STREAM.INFO), which is all the JetStream
// API a service other than the catalog may use on the streams (package
// identity): the catalog sets them up, the others find them so.
func (b *Bus) Setup(ctx context.Context) error {
	p := b.cfg.Prefix
	streams := []jetstream.StreamConfig{{
		Name:        b.CommandStream(),
		Description: "Slipway commands: one durable consumer per service",
		Subjects:    []string{p + ".cmd.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Duplicates:  duplicateWindow,
	}, {
		Name:        b.EventStream(),
		Description: "Slipway events",
		Subjects:    []string{p + ".evt.>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      b.cfg.EventMaxAge,
		Duplicates:  min(duplicateWindow, b.cfg.EventMaxAge),
	}, {
		Name:        b.DeadLetterStream(),
		Description: "Slipway dead letters: messages that exhausted their deliveries",
		Subjects:    []string{p + ".dlq.>"},
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  duplicateWindow,
	}}
	for _, sc := range streams {
		sc.Storage = jetstream.FileStorage
		sc.Replicas = b.cfg.Replicas
		if st, err := b.js.Stream(ctx, sc.Name); err == nil && sameStream(st.CachedInfo().Config, sc) {
			continue
		}
		err := whileNoResponders(ctx, func() error {
			_, err := b.js.CreateOrUpdateStream(ctx, sc)
			return err
		})
		if err != nil {
			return fmt.Errorf("bus: create or update stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// AwaitStreams waits until the command, event and dead-letter streams
// exist (reading their info only), for a service that may not create them
// itself: where NATS authenticates, only the catalog does (package
// identity), and it may start after the others.
func (b *Bus) AwaitStreams(ctx context.Context) error {
	delay := 100 * time.Millisecond
	for _, name := range []string{b.CommandStream(), b.EventStream(), b.DeadLetterStream()} {
		for {
			_, err := b.js.Stream(ctx, name)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("bus: stream %s: %w", name, err)
			}
			b.log.Info("bus: waiting for the catalog to set up the streams", "stream", name)
			select {
			case <-ctx.Done():
				return fmt.Errorf("bus: stream %s was not set up: %w", name, ctx.Err())
			case <-time.After(delay):
			}
			delay = min(delay*2, 5*time.Second)
		}
	}
	return nil
}

// sameStream reports whether a stream configured as have is what Setup
// asks for, want: the settings Setup sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Description == want.Description &&
		have.Retention == want.Retention && have.MaxAge == want.MaxAge && have.Duplicates == want.Duplicates &&
		have.Storage == want.Storage && have.Replicas == want.Replicas
}

// KeyValue creates or updates a KV bucket keeping 5 revisions per key;
// ttl 0 keeps entries forever.
func (b *Bus) KeyValue(ctx context.Context, bucket string, ttl time.Duration) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := whileNoResponders(ctx, func() (err error) {
		kv, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   bucket,
			History:  5,
			TTL:      ttl,
			Storage:  jetstream.FileStorage,
			Replicas: b.cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: key-value bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// whileNoResponders runs f again, for up to noRespondersFor, while the
// JetStream API has no responder: the server takes an account's new JWT
// (the catalog's revocations, package identity) by setting the account's
// imports, the JetStream API among them, up anew, and a request in that
// moment finds no one. A service starting beside the catalog must not
// fail on it.
func whileNoResponders(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(noRespondersFor)
	for {
		err := f()
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// noRespondersFor bounds whileNoResponders.
const noRespondersFor = 5 * time.Second
