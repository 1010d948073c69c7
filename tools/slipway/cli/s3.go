package cli

// S3 without shared keys: the CLI holds no service key. It reads a blob
// through a presigned URL or temporary keys the catalog issues for one
// image it may use (`image url`, `image s3-creds`, export), and writes
// uploads with temporary keys limited to the user's own staging prefixes
// (upload-creds). `s3 provision` is the operator's step that makes the
// per-service MinIO users with the root keys.

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/s3iam"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// tempConfig reaches S3 with temporary keys the catalog issued, trusting
// the CLI's CA (--ca) when S3 speaks TLS with a certificate of the stack's.
func (cl *client) tempConfig(c schemas.S3TemporaryCredentials) blob.Config {
	return blob.Config{Endpoint: c.Endpoint, Region: c.Region, AccessKey: c.AccessKey, SecretKey: c.SecretKey,
		SessionToken: c.SessionToken, CAFile: cl.ca}
}

// uploadStore is a store acting with the user's upload keys, and the
// bucket they write to.
func (cl *client) uploadStore(ctx context.Context, b *bus.Bus) (*blob.Store, string, error) {
	store, c, err := tempStore(ctx, cl, b, schemas.QryCatalogUploadCreds, schemas.CatalogUploadCredsRequest{}, "upload keys")
	return store, c.Bucket, err
}

// blobStore is a store whose temporary keys read image id's blob only.
func (cl *client) blobStore(ctx context.Context, b *bus.Bus, id int64) (*blob.Store, schemas.S3TemporaryCredentials, error) {
	return tempStore(ctx, cl, b, schemas.QryCatalogBlobCreds, schemas.CatalogBlobCredsRequest{ID: id}, fmt.Sprintf("S3 keys for image %d", id))
}

// tempStore asks the catalog's query q for temporary keys (what names
// them in an error) and is a store acting with them.
func tempStore[Req any](ctx context.Context, cl *client, b *bus.Bus, q schemas.Qry[Req, schemas.S3TemporaryCredentials], req Req, what string) (*blob.Store, schemas.S3TemporaryCredentials, error) {
	c, err := ask(ctx, b, q, req, what)
	if err != nil {
		return nil, c, err
	}
	store, err := blob.New(cl.tempConfig(c))
	if err != nil {
		return nil, c, fmt.Errorf("s3 %s: %w", c.Endpoint, err)
	}
	return store, c, nil
}

func newImageURLCmd(c *client) *cobra.Command {
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "url ID|NAME",
		Short: "Print a presigned URL that downloads the image's blob (curl, wget, any S3 client)",
		Long: `Print an HTTP URL that GETs the image's stored blob until it expires. The
catalog signs it with its own S3 identity for that one object, if you may use
the image; anyone holding the URL can read the blob until then.`,
		Example: `  curl -o disk.qcow2 "$(slipway image url 7)"
  qemu-img info "$(slipway image url alpine --expires 10m)"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, findImage, args[0], func(b *bus.Bus, img render.Image) error {
				u, err := ask(cmd.Context(), b, schemas.QryCatalogBlobURL,
					schemas.CatalogBlobURLRequest{ID: int64(img.ID), ExpiresS: int64(expires / time.Second)}, "blob URL")
				if err != nil {
					return err
				}
				fmt.Fprintln(c.io.out, u.URL)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&expires, "expires", time.Hour, "how long the URL works (1m to 168h)")
	return cmd
}

func newImageS3CredsCmd(c *client) *cobra.Command {
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "s3-creds ID|NAME",
		Short: "Print temporary S3 keys that read the image's blob, as shell exports for aws and mc",
		Long: `Print temporary S3 keys (MinIO STS, issued by the catalog) that read the
image's blob and nothing else, if you may use the image, as exports of
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL,
AWS_DEFAULT_REGION and MC_HOST_slipway, followed by SLIPWAY_BLOB (s3://bucket/key).`,
		Example: `  eval "$(slipway image s3-creds 7)"
  aws s3 cp "$SLIPWAY_BLOB" disk.qcow2
  mc cp "slipway/${SLIPWAY_BLOB#s3://}" disk.qcow2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, findImage, args[0], func(b *bus.Bus, img render.Image) error {
				k, err := ask(cmd.Context(), b, schemas.QryCatalogBlobCreds,
					schemas.CatalogBlobCredsRequest{ID: int64(img.ID), DurationS: int64(duration / time.Second)}, "S3 keys")
				if err != nil {
					return err
				}
				return printExports(c.io.out, k)
			})
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", time.Hour, "how long the keys work (15m to 12h)")
	return cmd
}

// printExports prints k as shell exports, each value single-quoted.
func printExports(w interface{ Write([]byte) (int, error) }, k schemas.S3TemporaryCredentials) error {
	u, err := url.Parse(k.Endpoint)
	if err != nil || u.Host == "" {
		return fmt.Errorf("the catalog named S3 endpoint %q: not a URL", k.Endpoint)
	}
	mc := u.Scheme + "://" + url.PathEscape(k.AccessKey) + ":" + url.PathEscape(k.SecretKey) + ":" + url.PathEscape(k.SessionToken) + "@" + u.Host
	for _, kv := range [][2]string{
		{"AWS_ACCESS_KEY_ID", k.AccessKey}, {"AWS_SECRET_ACCESS_KEY", k.SecretKey}, {"AWS_SESSION_TOKEN", k.SessionToken},
		{"AWS_ENDPOINT_URL", k.Endpoint}, {"AWS_DEFAULT_REGION", k.Region}, {"MC_HOST_slipway", mc},
		{"SLIPWAY_BLOB", blob.URL(k.Bucket, k.Key)},
	} {
		if _, err := fmt.Fprintf(w, "export %s=%s\n", kv[0], shellQuote(kv[1])); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(w, "# expires %s\n", k.ExpiresAt)
	return err
}

// shellQuote single-quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func newS3Cmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "s3",
		Short: "Operator steps on the S3 server (MinIO)",
		RunE:  unknownSubcommand,
	}
	var (
		dir        string
		perService bool
	)
	provision := &cobra.Command{
		Use:   "provision --dir DIR [--per-service]",
		Short: "Make the buckets and one MinIO user with a scoped policy per service; write their keys to DIR",
		Long: `With MinIO's root keys (--s3-access-key/--s3-secret-key or
SLIPWAY_S3_ACCESS_KEY/SLIPWAY_S3_SECRET_KEY), create the buckets of the layout
(SLIPWAY_UPLOAD_BUCKET, SLIPWAY_DATASTORE_*_BUCKET, SLIPWAY_IMPORT_BUCKETS are
read), and for each service that uses S3 a canned policy limited to what it
does and a user bearing it. Each service's keys go to DIR/<service>.json
(0600): point the service at it with SLIPWAY_S3_KEYS_FILE. With --per-service
they go to DIR/<service>/` + serviceKeysFile + ` instead, owned by whoever owns
DIR/<service> (the layout of "slipway identity init", one secrets volume per
container, as compose mounts them). Running it again keeps existing keys and
rewrites the policies. The root keys are needed only here and by MinIO itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.s3Access == "" || g.s3Secret == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("s3 provision needs MinIO's root keys: --s3-access-key and --s3-secret-key (or SLIPWAY_S3_ACCESS_KEY and SLIPWAY_S3_SECRET_KEY)")}
			}
			if dir == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--dir is required: where the services' keys files go")}
			}
			l, err := s3iam.LayoutFromEnv()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			keysFile := func(svc string) string { return s3iam.KeysFile(dir, svc) }
			if perService {
				keysFile = func(svc string) string { return filepath.Join(dir, svc, serviceKeysFile) }
			}
			keys, err := s3iam.ProvisionTo(cmd.Context(), g.blobConfig(), l, schemas.Services(), keysFile)
			if err != nil {
				return err
			}
			for _, svc := range schemas.Services() {
				if _, ok := keys[svc]; !ok {
					continue
				}
				if perService {
					if err := chownLikeDir(keysFile(svc)); err != nil {
						return err
					}
				}
				fmt.Fprintf(g.io.out, "%s\t%s\n", svc, keysFile(svc))
			}
			return nil
		},
	}
	provision.Flags().StringVar(&dir, "dir", "", "directory of the services' keys files (made 0700)")
	provision.Flags().BoolVar(&perService, "per-service", false, "write DIR/<service>/"+serviceKeysFile+", owned like DIR/<service> (compose's secrets volumes)")
	cmd.AddCommand(provision)
	return cmd
}

// serviceKeysFile is a service's S3 keys file in its own secrets directory
// (s3 provision --per-service; compose's SLIPWAY_S3_KEYS_FILE).
const serviceKeysFile = "s3.json"

// chownLikeDir gives the file at path to the owner of its directory: the
// uid its container runs as, which identity init gave the directory.
func chownLikeDir(path string) error {
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner to copy", filepath.Dir(path))
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("s3 keys %s: %w", path, err)
	}
	return nil
}
