package cli

// slipway identity init: the keys, credentials and certificates compose
// runs with (package compose).

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/tools/slipway/compose"
)

func newIdentityCmd(c *client) *cobra.Command {
	cmd := &cobra.Command{Use: "identity", Short: "The NATS identities and TLS certificates of a deployment", RunE: unknownSubcommand}
	cmd.AddCommand(newIdentityInitCmd(c))
	return cmd
}

func newIdentityInitCmd(c *client) *cobra.Command {
	var (
		owners []string
		o      compose.Options
	)
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Write the NATS operator, every service's and oneadmin's credentials and the TLS certificates (what docker-compose.yml runs with)",
		Long: `Write into DIR, one directory per container, what docker-compose.yml needs
to run with authentication and TLS: the NATS operator configuration
(nats/auth.conf, included by deploy/nats/nats.conf), a CA and the
certificates NATS and MinIO present, each service's credentials, the
catalog's keys that sign users' JWTs, the dead-letter forwarder's
credentials and oneadmin's (cli/oneadmin.creds). Keys, credentials and the
CA are kept when they are there: running it again changes no identity.

--owner NAME=UID[:GID] gives directory NAME and its files (0700, 0600) to
the uid its container runs as; compose's "identity" service passes the uids
of deploy/Dockerfile.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Prefix = c.prefix
			o.Owners = map[string]compose.Owner{}
			for _, s := range owners {
				name, owner, err := parseOwner(s)
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				o.Owners[name] = owner
			}
			if err := compose.Init(args[0], o); err != nil {
				return err
			}
			fmt.Fprintf(c.io.out, "identities and certificates in %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&owners, "owner", nil, "NAME=UID[:GID]: give directory NAME to that uid (repeatable)")
	cmd.Flags().StringArrayVar(&o.Hosts, "host", nil, "a further name or address NATS's and MinIO's certificates are for (repeatable)")
	return cmd
}

// parseOwner reads NAME=UID[:GID]; GID defaults to UID.
func parseOwner(s string) (string, compose.Owner, error) {
	name, ids, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", compose.Owner{}, fmt.Errorf("--owner %q: want NAME=UID[:GID]", s)
	}
	u, g, hasGID := strings.Cut(ids, ":")
	uid, err := strconv.Atoi(u)
	if err != nil || uid < 0 {
		return "", compose.Owner{}, fmt.Errorf("--owner %q: uid %q is not a number", s, u)
	}
	gid := uid
	if hasGID {
		if gid, err = strconv.Atoi(g); err != nil || gid < 0 {
			return "", compose.Owner{}, fmt.Errorf("--owner %q: gid %q is not a number", s, g)
		}
	}
	return name, compose.Owner{UID: uid, GID: gid}, nil
}
