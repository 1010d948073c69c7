package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/tools/slipway/up"
)

func newUpCmd(g *globals) *cobra.Command {
	var (
		cfg                 up.Config
		logLevel, logFormat string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole stack in one process: NATS, MinIO and every service",
		Long: `Run Slipway in one process: an embedded nats-server with JetStream (store
under --data-dir), a MinIO child process (unless --s3-endpoint names an S3
server), the bus streams, and every implemented service. Prints how to reach
NATS and S3, then "slipway is up"; Ctrl-C stops everything cleanly. With
--tls, NATS and MinIO speak only TLS with certificates of a CA the stack makes
in --data-dir/tls (kept for later starts); export SLIPWAY_CA as printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := run.NewLogger(g.io.err, logLevel, logFormat)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			cfg.Logger = logger
			cfg.Prefix = g.prefix
			cfg.User = g.user
			// Only an explicit --s3-endpoint means "use that server": an
			// exported SLIPWAY_S3_ENDPOINT left over from an earlier `up`
			// must not stop this one from starting its MinIO.
			if cmd.Flags().Changed("s3-endpoint") {
				cfg.S3.Endpoint = g.s3Endpoint
				cfg.S3.Secure = g.s3Secure || strings.HasPrefix(g.s3Endpoint, "https://")
				cfg.S3.CAFile = g.ca
			}
			if cmd.Flags().Changed("s3-access-key") || cfg.S3.Endpoint != "" {
				cfg.S3.AccessKey = g.s3Access
			}
			if cmd.Flags().Changed("s3-secret-key") || cfg.S3.Endpoint != "" {
				cfg.S3.SecretKey = g.s3Secret
			}
			return up.Run(cmd.Context(), cfg, g.io.out)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.DataDir, "data-dir", up.DefaultDataDir, "where NATS and MinIO keep their data")
	fl.IntVar(&cfg.NATSPort, "nats-port", up.DefaultNATSPort, "NATS client port on 127.0.0.1 (-1: any free port)")
	fl.StringVar(&cfg.S3RemotesFile, "s3-remotes", env(blob.EnvRemotes, ""), "remotes file: other S3 servers holding datastores (CREDENTIALS names one), given to every service ($"+blob.EnvRemotes+")")
	fl.StringVar(&cfg.MinIOBin, "minio-bin", up.DefaultMinIOBin, "MinIO binary")
	fl.StringVar(&cfg.MinIOAddr, "minio-address", up.DefaultMinIOAddr, "address MinIO listens on")
	fl.StringVar(&cfg.MarketHTTPAddr, "market-http-addr", "", "serve the PUBLIC_DIRs of http marketplaces (--data-dir/"+up.MarketPublicRootDir+", or $SLIPWAY_MARKET_PUBLIC_ROOT) read-only on this address, e.g. 127.0.0.1:8088: PUBLIC_DIR <root>/<dir> is BASE_URL http://<addr>/<dir>/")
	fl.StringVar(&cfg.WebSocketAddr, "websocket-addr", up.DefaultWebSocketAddr, "NATS also listens for WebSocket clients (the web console's browsers) here, with the same credentials and permissions; wss:// with --tls; \"\" for none")
	fl.StringVar(&cfg.ConsoleHTTPAddr, "console-addr", up.DefaultConsoleHTTPAddr, "serve the web console here (plain HTTP: keep it on loopback or behind a TLS proxy); \"\" for none")
	fl.BoolVar(&cfg.TLS, "tls", false, "NATS and MinIO speak only TLS, with certificates of a CA made in --data-dir/"+up.TLSDir+" (clients trust its ca.crt: SLIPWAY_CA)")
	fl.StringVar(&logLevel, "log-level", env(run.LogLevelEnv, "info"), "services' log level: debug, info, warn, error ($SLIPWAY_LOG_LEVEL)")
	fl.StringVar(&logFormat, "log-format", env(run.LogFormatEnv, "text"), "services' log format: text or json ($SLIPWAY_LOG_FORMAT)")
	return cmd
}
