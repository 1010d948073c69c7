package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/s3iam"
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/pkg/tlsca"
	"github.com/slipway/slipway/schemas"
)

// Defaults of Config, matching the defaults of the CLI's connection flags.
const (
	DefaultDataDir     = ".data"
	DefaultNATSPort    = 4222
	DefaultMinIOAddr   = "127.0.0.1:9000"
	DefaultConsoleAddr = "127.0.0.1:9001"
	DefaultMinIOBin    = "./bin/minio"
	// S3KeysDir, under the data directory (0700), keeps the MinIO child's
	// root keys (root.json, used only by MinIO and provisioning) and one
	// keys file per service (<service>.json), all 0600 and generated: no
	// key is compiled in.
	S3KeysDir = "s3"
	// IdentityDir, under the data directory, keeps the keys of the NATS
	// operator and accounts (package identity), 0700.
	IdentityDir = "identity"
	// CredentialsFile, under the data directory, is oneadmin's NATS
	// credentials, 0600; the CLI finds it there by default.
	CredentialsFile = "oneadmin.creds"
	// TLSDir, under the data directory, keeps the stack's CA (package
	// tlsca: ca.crt, ca.key 0600) and the server certificate NATS and
	// MinIO present (server.crt, server.key; MinIO's copy in minio/).
	TLSDir = "tls"
)

// Config says what `slipway up` starts.
type Config struct {
	// DataDir holds the NATS store (<DataDir>/nats) and MinIO's data
	// (<DataDir>/minio). Default ".data".
	DataDir string
	// NATSPort is the client port on 127.0.0.1; -1 picks a free one.
	// 0 means DefaultNATSPort.
	NATSPort int
	// Prefix of subjects and streams; default "slipway".
	Prefix string
	// S3 reaches an existing S3 server with the operator's keys, which
	// every service then shares (there is no default). When S3.Endpoint is
	// empty a MinIO child process is started on MinIOAddr with S3's keys
	// as its root, or root keys generated into <DataDir>/s3/root.json, and
	// each service gets a MinIO user of its own (package s3iam).
	S3 blob.Config
	// S3RemotesFile, when set, is a remotes file (blob.ReadRemotes): the
	// other S3 servers that hold datastores, which every service reaches
	// (with the remote keys the file names, the same for every service).
	S3RemotesFile string
	// MinIOBin is the MinIO binary (default ./bin/minio, then
	// $SLIPWAY_MINIO_BIN, then PATH).
	MinIOBin string
	// MinIOAddr and ConsoleAddr are MinIO's API and (disabled) console
	// addresses.
	MinIOAddr, ConsoleAddr string
	// User owns the images the catalog creates (default $SLIPWAY_USER,
	// then the catalog's default).
	User string
	// Guard says which addresses the converter, the builder and
	// market-dockerhub may fetch from (see package netguard); nil reads
	// SLIPWAY_FETCH_ALLOW, and Start fails if that is malformed.
	Guard *netguard.Policy
	// TLS makes NATS and the MinIO child speak only TLS, with a server
	// certificate of a CA the stack makes in <DataDir>/tls (reused on
	// later starts); services and the CLI trust that CA (SLIPWAY_CA).
	TLS bool
	// Logger receives the services' logs; default discards below Warn.
	Logger *slog.Logger
	// MarketHTTPAddr, when set, serves market-lxc's public root (the
	// PUBLIC_DIRs of http marketplaces) read-only there, e.g.
	// 127.0.0.1:8088; Stack.MarketURL is then its URL.
	MarketHTTPAddr string
	// WebSocketAddr, when set, has NATS listen for WebSocket clients (the
	// web console's browsers) there too, e.g. DefaultWebSocketAddr (port
	// -1: any free one); wss:// when TLS is on. Stack.WebSocketURL is
	// then its URL.
	WebSocketAddr string
	// ConsoleHTTPAddr, when set, serves the web console there (HTTP, e.g.
	// DefaultConsoleHTTPAddr); it needs WebSocketAddr. Stack.ConsoleURL
	// is then its URL.
	ConsoleHTTPAddr string
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.NATSPort == 0 {
		c.NATSPort = DefaultNATSPort
	}
	if c.Prefix == "" {
		c.Prefix = bus.DefaultPrefix
	}
	if c.MinIOBin == "" {
		c.MinIOBin = DefaultMinIOBin
	}
	if c.MinIOAddr == "" {
		c.MinIOAddr = DefaultMinIOAddr
	}
	if c.ConsoleAddr == "" {
		c.ConsoleAddr = nextPort(c.MinIOAddr, DefaultConsoleAddr)
	}
	if c.User == "" {
		c.User = os.Getenv("SLIPWAY_USER")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// nextPort is addr with its port plus one (MinIO's console sits beside its
// API), or def when addr has no numeric port.
func nextPort(addr, def string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return def
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n >= 65535 {
		return def
	}
	return net.JoinHostPort(host, strconv.Itoa(n+1))
}

// Stack is a running Slipway.
type Stack struct {
	// NATSURL reaches the embedded nats-server.
	NATSURL string
	// S3 reaches the object store (the MinIO child or the given server);
	// it holds no keys: each service has its own.
	S3 blob.Config
	// S3KeysDir holds the generated S3 keys (the MinIO child's root and
	// one file per service); "" for an external S3 server.
	S3KeysDir string
	// MinIO tells whether S3 is a MinIO child process of this stack.
	MinIO bool
	// Prefix is the subject prefix.
	Prefix string
	// Services names the services running in-process.
	Services []string
	// Accelerator is what the launcher's probe chose, and what it passed
	// over ("" without a launcher).
	Accelerator string
	// Credentials is oneadmin's NATS credentials file, in the data
	// directory: the CLI's default (SLIPWAY_CREDS).
	Credentials string
	// CA is the certificate of the CA clients trust (SLIPWAY_CA) when
	// the stack speaks TLS, else "".
	CA string
	// MarketURL serves the public root of http marketplaces
	// (Config.MarketHTTPAddr), else "": a PUBLIC_DIR <root>/<dir> is at
	// BASE_URL <MarketURL>/<dir>/.
	MarketURL string
	// WebSocketURL reaches NATS over WebSocket (Config.WebSocketAddr),
	// else "".
	WebSocketURL string
	// ConsoleURL serves the web console (Config.ConsoleHTTPAddr), else "".
	ConsoleURL string

	marketHTTP  *http.Server
	consoleHTTP *http.Server
	cfg         Config
	auth        *identity.Authority
	ca          *tlsca.CA
	nats        *server.Server
	minio       *minioProc
	// keys are the S3 settings of each service: its own MinIO user, or
	// the operator's keys for every service of an external S3 server.
	keys  map[string]blob.Config
	group *run.Group
	buses []*bus.Bus

	stopOnce sync.Once
	stopErr  error
}

// Start brings the stack up: NATS, MinIO (unless cfg.S3.Endpoint is set),
// streams, the dead-letter forwarder and every service. On error whatever
// was started is stopped again.
func Start(ctx context.Context, cfg Config) (st *Stack, err error) {
	cfg.defaults()
	if cfg.Guard == nil {
		if cfg.Guard, err = netguard.FromEnv(); err != nil {
			return nil, err
		}
	}
	if cfg.S3RemotesFile != "" {
		if cfg.S3.Remotes, err = blob.ReadRemotes(cfg.S3RemotesFile); err != nil {
			return nil, err
		}
	}
	s := &Stack{cfg: cfg, Prefix: cfg.Prefix, S3: cfg.S3}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	if err := s.makeCA(); err != nil {
		return nil, err
	}
	if err := s.startNATS(); err != nil {
		return nil, err
	}
	if err := s.startS3(ctx); err != nil {
		return nil, err
	}
	if err := s.serveMarkets(); err != nil {
		return nil, err
	}
	if err := s.startServices(ctx); err != nil {
		return nil, err
	}
	if err := s.serveConsole(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stack) startNATS() error {
	dir := filepath.Join(s.cfg.DataDir, "nats")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("nats: store directory: %w", err)
	}
	// The server trusts only the stack's own authority, kept beside its
	// data: anonymous clients are refused, each service and user is who
	// its credentials say.
	auth, err := identity.Open(filepath.Join(s.cfg.DataDir, IdentityDir), "slipway")
	if err != nil {
		return err
	}
	s.auth = auth
	s.Credentials = filepath.Join(s.cfg.DataDir, CredentialsFile)
	if err := auth.EnsureCredentials(s.Credentials, identity.User(acl.AdminUser, true), s.Prefix); err != nil {
		return fmt.Errorf("oneadmin's credentials: %w", err)
	}
	opts := &server.Options{
		ServerName: "slipway",
		Host:       "127.0.0.1",
		Port:       s.cfg.NATSPort,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true, // signals belong to the CLI, which stops the server in order
	}
	if err := auth.ConfigureServer(opts); err != nil {
		return err
	}
	if err := s.serverTLS(opts); err != nil {
		return err
	}
	if err := s.webSocket(opts); err != nil {
		return err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats: configure (port %d, store %s): %w", s.cfg.NATSPort, dir, err)
	}
	srv.Start()
	s.nats = srv
	if !srv.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats: not ready for connections on 127.0.0.1:%d after 10s (is the port taken?)", s.cfg.NATSPort)
	}
	if !srv.JetStreamEnabled() {
		return fmt.Errorf("nats: JetStream did not start (store %s)", dir)
	}
	s.NATSURL = srv.ClientURL()
	if s.cfg.WebSocketAddr != "" {
		s.WebSocketURL = srv.WebsocketURL()
	}
	return nil
}

func (s *Stack) startS3(ctx context.Context) error {
	if s.cfg.S3.Endpoint != "" {
		return s.sharedS3(ctx)
	}
	bin, err := findMinIO(s.cfg.MinIOBin)
	if err != nil {
		return err
	}
	s.S3KeysDir = filepath.Join(s.cfg.DataDir, S3KeysDir)
	root := blob.Keys{AccessKey: s.cfg.S3.AccessKey, SecretKey: s.cfg.S3.SecretKey}
	if root.AccessKey == "" && root.SecretKey == "" {
		if root, err = s3iam.LoadOrCreateKeys(filepath.Join(s.S3KeysDir, s3iam.RootKeysFile), "slipway-root"); err != nil {
			return fmt.Errorf("minio: root keys: %w", err)
		}
	}
	dir := filepath.Join(s.cfg.DataDir, "minio")
	certs, err := s.minioCerts()
	if err != nil {
		return err
	}
	p, err := startMinIO(ctx, bin, dir, s.cfg.MinIOAddr, s.cfg.ConsoleAddr, root.AccessKey, root.SecretKey, certs, s.CA)
	if err != nil {
		return err
	}
	s.minio = p
	s.MinIO = true
	s.S3.Endpoint = s.cfg.MinIOAddr
	s.S3.Secure = certs != ""
	if certs != "" {
		s.S3.CAFile = s.CA
	}
	if s.S3.Region == "" {
		s.S3.Region = "us-east-1" // MinIO's; spares a bucket-location round trip
	}
	return s.provision(ctx, s.S3.WithKeys(root))
}

// sharedS3 is an operator's S3 server: every service uses the keys given
// (no MinIO admin API to make users with), which must be given.
func (s *Stack) sharedS3(ctx context.Context) error {
	if s.cfg.S3.AccessKey == "" || s.cfg.S3.SecretKey == "" {
		return fmt.Errorf("s3 %s: give its keys (--s3-access-key and --s3-secret-key, or SLIPWAY_S3_ACCESS_KEY and SLIPWAY_S3_SECRET_KEY): there is no default", s.cfg.S3.Endpoint)
	}
	store, err := blob.New(s.cfg.S3)
	if err != nil {
		return fmt.Errorf("s3 %s: %w", s.cfg.S3.Endpoint, err)
	}
	l, err := s3iam.LayoutFromEnv()
	if err != nil {
		return err
	}
	if err := s3iam.MakeBuckets(ctx, store, l); err != nil {
		return fmt.Errorf("s3 %s: %w", s.cfg.S3.Endpoint, err)
	}
	s.keys = map[string]blob.Config{}
	for _, svc := range services {
		s.keys[svc.name] = s.cfg.S3
	}
	s.S3.AccessKey, s.S3.SecretKey = "", ""
	return nil
}

// provision makes the buckets and one MinIO user a service with root's
// keys (package s3iam), whose keys each in-process service then uses.
func (s *Stack) provision(ctx context.Context, root blob.Config) error {
	l, err := s3iam.LayoutFromEnv()
	if err != nil {
		return err
	}
	names := make([]string, len(services))
	for i, svc := range services {
		names[i] = svc.name
	}
	keys, err := s3iam.Provision(ctx, root, l, names, s.S3KeysDir)
	if err != nil {
		return fmt.Errorf("s3 %s: %w", root.Endpoint, err)
	}
	s.keys = map[string]blob.Config{}
	for name, k := range keys {
		s.keys[name] = root.WithKeys(k)
	}
	s.S3.AccessKey, s.S3.SecretKey = "", ""
	return nil
}

// storeOf is the blob store of service name, acting with its own keys;
// nil for a service that never touches S3.
func (s *Stack) storeOf(name string) (*blob.Store, error) {
	cfg, ok := s.keys[name]
	if !ok {
		return nil, nil
	}
	store, err := blob.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: s3 %s: %w", name, cfg.Endpoint, err)
	}
	return store, nil
}

// connect opens the bus of service name, authenticated as as.
func (s *Stack) connect(ctx context.Context, name string, as identity.Principal) (*bus.Bus, error) {
	creds, err := s.auth.Option(as, s.Prefix)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b, err := bus.Connect(ctx, bus.Config{
		URL:            s.NATSURL,
		Prefix:         s.Prefix,
		Service:        name,
		Sender:         as.Name,
		Logger:         s.cfg.Logger,
		ConnectTimeout: 10 * time.Second,
		CAFile:         s.CA,
	}, creds)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s.buses = append(s.buses, b)
	return b, nil
}

func (s *Stack) startServices(ctx context.Context) error {
	// The streams and the dead-letter forwarder are the catalog's, as
	// OpenNebula's core keeps the pools.
	admin, err := s.connect(ctx, "slipway", identity.Service(schemas.ServiceCatalog))
	if err != nil {
		return err
	}
	if err := admin.Setup(ctx); err != nil {
		return err
	}
	// The services outlive the ctx that started them: Stop ends them. The
	// group stops them all when one fails.
	s.group = run.NewGroup(context.WithoutCancel(ctx), run.WithDrain(drainTimeout))
	dlqCtx, dlqCancel := context.WithCancel(s.group.Context())
	dlq, err := admin.RunDeadLetter(dlqCtx)
	if err != nil {
		dlqCancel()
		return fmt.Errorf("dead-letter forwarder: %w", err)
	}
	s.group.Go("dead-letter", func(ctx context.Context) error {
		<-ctx.Done()
		dlq.Stop()
		dlqCancel()
		return nil
	})
	var ready []readier
	var probed []accelerated
	for _, svc := range services {
		b, err := s.connect(ctx, svc.name, identity.Service(svc.name))
		if err != nil {
			return err
		}
		store, err := s.storeOf(svc.name)
		if err != nil {
			return err
		}
		r, err := svc.wire(servicemain.Deps{Bus: b, Store: store, Logger: s.cfg.Logger, Stack: s.stack()})
		if err != nil {
			return fmt.Errorf("%s: %w", svc.name, err)
		}
		if rd, ok := r.(readier); ok {
			ready = append(ready, rd)
		}
		if a, ok := r.(accelerated); ok {
			probed = append(probed, a)
		}
		s.Services = append(s.Services, svc.name)
		s.group.Go(svc.name, func(ctx context.Context) error {
			err := r.Run(ctx)
			if err == nil && ctx.Err() == nil {
				return errors.New("stopped on its own")
			}
			return err
		})
	}
	if err := s.waitReady(ctx, ready); err != nil {
		return err
	}
	for _, a := range probed {
		s.Accelerator = a.Accelerator().Explain()
	}
	return nil
}

// readyTimeout bounds how long services may take to set up.
const readyTimeout = time.Minute

func (s *Stack) waitReady(ctx context.Context, services []readier) error {
	timeout := time.NewTimer(readyTimeout)
	defer timeout.Stop()
	for _, r := range services {
		select {
		case <-r.Ready():
		case <-s.group.Context().Done():
			s.group.Stop()
			if err := s.group.Wait(); err != nil {
				return err
			}
			return errors.New("services stopped while starting")
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("services not ready after %s", readyTimeout)
		}
	}
	return nil
}

// drainTimeout bounds how long services get to finish their work on Stop.
const drainTimeout = 30 * time.Second

// Failed is closed when the stack stops serving: a service failed (Err
// says why) or Stop was called.
func (s *Stack) Failed() <-chan struct{} {
	if s.group == nil {
		return nil
	}
	return s.group.Context().Done()
}

// Stop takes the stack down in order: services drain and return, their
// connections drain, NATS shuts down, MinIO stops. It returns the first
// service error, if any, and is safe to call more than once.
func (s *Stack) Stop() error {
	s.stopOnce.Do(func() {
		s.stopMarkets()
		stopHTTP(s.consoleHTTP)
		if s.group != nil {
			s.group.Stop()
			s.stopErr = s.group.Wait()
		}
		for _, b := range s.buses {
			b.Close()
		}
		if s.nats != nil {
			s.nats.Shutdown()
			s.nats.WaitForShutdown()
		}
		if s.minio != nil {
			s.minio.stop(10 * time.Second)
		}
	})
	return s.stopErr
}

// Env is the environment that points the CLI (and the services run as
// separate binaries) at this stack.
func (s *Stack) Env() [][2]string {
	env := [][2]string{
		{"SLIPWAY_NATS_URL", s.NATSURL},
		{"SLIPWAY_CREDS", s.Credentials},
		{"SLIPWAY_S3_ENDPOINT", s.S3.Endpoint},
	}
	if s.S3.Secure {
		env = append(env, [2]string{"SLIPWAY_S3_SECURE", "true"})
	}
	if s.CA != "" {
		env = append(env, [2]string{servicemain.EnvCA, s.CA})
	}
	if s.cfg.S3RemotesFile != "" {
		env = append(env, [2]string{blob.EnvRemotes, s.cfg.S3RemotesFile})
	}
	if s.Prefix != bus.DefaultPrefix {
		env = append(env, [2]string{"SLIPWAY_PREFIX", s.Prefix})
	}
	return env
}

// PrintInfo tells a person how to reach the stack.
func (s *Stack) PrintInfo(w io.Writer) {
	fmt.Fprintf(w, "NATS      %s (JetStream, store %s)\n", s.NATSURL, filepath.Join(s.cfg.DataDir, "nats"))
	fmt.Fprintf(w, "          oneadmin's credentials %s (anonymous clients are refused)\n", s.Credentials)
	if s.WebSocketURL != "" {
		fmt.Fprintf(w, "          WebSocket %s (same credentials and permissions)\n", s.WebSocketURL)
	}
	if s.CA != "" {
		fmt.Fprintf(w, "TLS       NATS and MinIO present certificates of the CA %s\n", s.CA)
	}
	scheme := "http"
	if s.S3.Secure {
		scheme = "https"
	}
	what := "S3 server"
	if s.MinIO {
		what = "MinIO, data " + filepath.Join(s.cfg.DataDir, "minio")
	}
	fmt.Fprintf(w, "S3        %s://%s (%s)\n", scheme, s.S3.Endpoint, what)
	if s.MinIO {
		fmt.Fprintf(w, "          keys in %s (root.json: MinIO's root, for provisioning only; one MinIO user a service)\n", s.S3KeysDir)
		fmt.Fprintln(w, "          users read blobs with `slipway image url ID` or `slipway image s3-creds ID`")
	} else {
		fmt.Fprintln(w, "          every service uses the keys given (no per-service users on an external server)")
	}
	for _, r := range s.S3.Remotes {
		fmt.Fprintf(w, "S3 remote %s %s holds %s (datastores with CREDENTIALS = %q)\n", r.Name, r.Endpoint, strings.Join(r.Buckets, ", "), r.Name)
	}
	fmt.Fprintf(w, "services  %s, dead-letter forwarder\n", strings.Join(s.Services, ", "))
	if s.Accelerator != "" {
		fmt.Fprintf(w, "QEMU      %s\n", s.Accelerator)
	}
	if s.ConsoleURL != "" {
		fmt.Fprintf(w, "console   %s (log in with a credentials file, e.g. %s)\n", s.ConsoleURL, s.Credentials)
	}
	if s.MarketURL != "" {
		fmt.Fprintf(w, "markets   %s serves %s (http marketplaces: PUBLIC_DIR %s/<dir>, BASE_URL %s/<dir>/)\n",
			s.MarketURL, s.PublicRoot(), s.PublicRoot(), s.MarketURL)
	}
	fmt.Fprintln(w, "\nTo use it from another shell:")
	for _, kv := range s.Env() {
		fmt.Fprintf(w, "  export %s=%s\n", kv[0], kv[1])
	}
}

// Run starts the stack, prints how to reach it and the ready line
// "slipway is up", and runs until ctx is cancelled (Ctrl-C) or a service
// fails; then it stops everything.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	s.PrintInfo(out)
	fmt.Fprintln(out, "\nslipway is up (Ctrl-C to stop)")
	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "slipway: stopping")
	case <-s.Failed():
		fmt.Fprintln(out, "slipway: a service failed, stopping")
	}
	if err := s.Stop(); err != nil {
		return err
	}
	fmt.Fprintln(out, "slipway: stopped")
	return nil
}
