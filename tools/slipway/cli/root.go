package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/pkg/telemetry"
	"github.com/slipway/slipway/tools/slipway/up"
)

// Defaults of the connection flags: they reach what `slipway up` starts.
const (
	DefaultNATSURL    = "nats://127.0.0.1:4222"
	DefaultS3Endpoint = "127.0.0.1:9000"
)

// ExitError carries a process exit code through cobra; its message, when
// not empty, has been or will be printed once.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// streams are the standard streams of one invocation.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// globals are the bus client and the S3 settings. Only the commands that
// move data through S3 take them (image create, image export, kernel
// add, up); the others take the client alone.
type globals struct {
	client
	s3Endpoint string
	s3Access   string
	s3Secret   string
	s3Secure   bool
}

// Execute runs the slipway command line args (without the program name)
// and returns the process exit code: 0 on success, 1 on failure, 2 on a
// usage error.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return execute(ctx, args, streams{in: os.Stdin, out: stdout, err: stderr})
}

func execute(ctx context.Context, args []string, s streams) int {
	// Traces start here when OTEL_* asks for export, so one import is one
	// trace from the CLI through every service (and `up`'s services share
	// the process's provider).
	if telemetry.Enabled() {
		shutdown, err := telemetry.Setup(ctx, "slipway")
		if err != nil {
			fmt.Fprintf(s.err, "slipway: telemetry: %v\n", err)
			return 1
		}
		defer func() { _ = shutdown(context.WithoutCancel(ctx)) }()
	}
	root := newRoot(s)
	markRuns(root)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *ExitError
	if errors.As(err, &exit) {
		if exit.Err != nil {
			fmt.Fprintf(s.err, "slipway: %v\n", exit.Err)
		}
		return exit.Code
	}
	fmt.Fprintf(s.err, "slipway: %v\n", err)
	if isUsage(err) {
		return 2
	}
	return 1
}

// isUsage tells cobra's and pflag's argument errors (an unknown command
// or flag, a wrong number of arguments, a missing required flag) from the
// errors of a command that ran: those come before any RunE.
func isUsage(err error) bool {
	var ran *ranError
	return !errors.As(err, &ran)
}

// ranError is an error a command's RunE returned: the command line was
// good, the command failed.
type ranError struct{ err error }

func (e *ranError) Error() string { return e.err.Error() }
func (e *ranError) Unwrap() error { return e.err }

// markRuns makes every RunE under c mark its errors as ranError.
func markRuns(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if err := run(cmd, args); err != nil {
				return &ranError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markRuns(sub)
	}
}

func newRoot(s streams) *cobra.Command {
	g := &globals{client: client{io: s}}
	root := &cobra.Command{
		Use:   "slipway",
		Short: "Slipway turns disks and container images into VM disk images",
		Long: `Slipway turns disks and container images into VM disk images, over NATS
JetStream and S3. "slipway up" runs the whole stack in one process; the
"image" commands talk to it (or to any Slipway) like OpenNebula's oneimage.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.SetIn(s.in)
	pf := root.PersistentFlags()
	pf.StringVar(&g.natsURL, "nats-url", env("SLIPWAY_NATS_URL", DefaultNATSURL), "NATS server URL ($SLIPWAY_NATS_URL)")
	pf.StringVar(&g.creds, "creds", env("SLIPWAY_CREDS", defaultCreds()), "NATS credentials file ($SLIPWAY_CREDS; default: slipway up's "+up.DefaultDataDir+"/"+up.CredentialsFile+" when present)")
	pf.StringVar(&g.ca, "ca", env(servicemain.EnvCA, defaultCA()), "PEM file of the CA trusted for NATS and S3 over TLS ($SLIPWAY_CA; default: slipway up --tls's "+up.DefaultDataDir+"/"+up.TLSDir+"/ca.crt when present)")
	pf.StringVar(&g.prefix, "prefix", env("SLIPWAY_PREFIX", bus.DefaultPrefix), "subject prefix ($SLIPWAY_PREFIX)")
	pf.StringVar(&g.s3Endpoint, "s3-endpoint", env("SLIPWAY_S3_ENDPOINT", DefaultS3Endpoint), "S3 endpoint host:port or URL ($SLIPWAY_S3_ENDPOINT)")
	pf.StringVar(&g.s3Access, "s3-access-key", env("SLIPWAY_S3_ACCESS_KEY", ""), "S3 access key, for `up --s3-endpoint` and `s3 provision` only; no default ($SLIPWAY_S3_ACCESS_KEY)")
	pf.StringVar(&g.s3Secret, "s3-secret-key", env("SLIPWAY_S3_SECRET_KEY", ""), "S3 secret key, for `up --s3-endpoint` and `s3 provision` only; no default ($SLIPWAY_S3_SECRET_KEY)")
	g.s3Secure = envBool("SLIPWAY_S3_SECURE")
	g.user = env("SLIPWAY_USER", "oneadmin")

	root.AddCommand(newUpCmd(g), newImageCmd(g), newMarketCmd(&g.client), newVersionCmd(&g.client))
	root.AddCommand(newKernelCmd(g))
	root.AddCommand(newLuksCmd(&g.client))
	root.AddCommand(newUserCmd(&g.client), newGroupCmd(&g.client), newIdentityCmd(&g.client))
	root.AddCommand(newDatastoreCmd(&g.client))
	root.AddCommand(newDeadLetterCmd(&g.client), newS3Cmd(g))
	root.AddCommand(newVMTemplateCmd(&g.client), newVMCmd(&g.client))
	root.AddCommand(newConsoleCmd(g))
	addExportCmd(root, g)
	addDownloadCmd(root, g)
	return root
}

// unknownSubcommand makes a typo fail instead of showing help.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return cmd.Help()
}

func env(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}

func envBool(key string) bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv(key))) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}
