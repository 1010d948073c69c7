package blob

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/slipway/slipway/pkg/tlsca"
)

// ErrNotFound is wrapped by errors about a missing bucket or object.
var ErrNotFound = errors.New("not found")

// IsClientError reports an S3 answer that will not change on retry: not
// found, denied, no such bucket, bad request (a 4xx other than a timeout or
// too many requests).
func IsClientError(err error) bool {
	if IsNotFound(err) {
		return true
	}
	var er minio.ErrorResponse
	return errors.As(err, &er) && er.StatusCode >= 400 && er.StatusCode < 500 &&
		er.StatusCode != http.StatusRequestTimeout && er.StatusCode != http.StatusTooManyRequests
}

// IsDenied reports whether S3 refused the request for the keys' policy
// (AccessDenied): what a scoped key meets outside its grant.
func IsDenied(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && er.Code == "AccessDenied"
}

// IsNotFound reports whether err says a bucket or object does not exist.
func IsNotFound(err error) bool {
	if errors.Is(err, ErrNotFound) {
		return true
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return isNotFoundResponse(er)
	}
	return false
}

func isNotFoundResponse(er minio.ErrorResponse) bool {
	switch er.Code {
	case minio.NoSuchKey, minio.NoSuchBucket, "NoSuchUpload", "NotFound":
		return true
	}
	return er.StatusCode == http.StatusNotFound
}

// wrapErr names the operation and object, and adds ErrNotFound to the chain
// when S3 said the object or bucket is missing.
func wrapErr(op, bucket, key string, err error) error {
	where := URL(bucket, key)
	if key == "" {
		where = "s3://" + bucket
	}
	if er := minio.ToErrorResponse(err); er.Code != "" && isNotFoundResponse(er) {
		return fmt.Errorf("%s %s: %w: %w", op, where, ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", op, where, err)
}

// Store reads and writes blobs in an S3-compatible object store, and in
// the remotes of its Config: each call goes to the server that holds its
// bucket (at).
type Store struct {
	cfg      Config
	client   *minio.Client
	core     minio.Core
	partSize uint64
	region   string
	bufs     sync.Pool // *[]byte of partSize bytes
	// remote is the remote this store reaches, on a remote's store.
	remote *Remote
	// remotes are the remotes' stores, on the default one.
	remotes []*Store
}

// New connects a Store, and one for each remote of cfg; it does not
// contact a server.
func New(cfg Config) (*Store, error) {
	if err := checkRemotes(cfg.Remotes); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	s, err := newStore(cfg, nil)
	if err != nil {
		return nil, err
	}
	for _, r := range cfg.Remotes {
		rs, err := newStore(r.config(cfg), &r)
		if err != nil {
			return nil, fmt.Errorf("blob: remote %q: %w", r.Name, err)
		}
		s.remotes = append(s.remotes, rs)
	}
	return s, nil
}

// at is the store of the server that holds bucket: a remote's when one of
// its bucket patterns names it, else s.
func (s *Store) at(bucket string) *Store {
	for _, r := range s.remotes {
		if r.remote.Holds(bucket) {
			return r
		}
	}
	return s
}

// ConfigFor is the configuration of the server that holds bucket (its
// keys too: for signing and asking its STS, never for handing out).
func (s *Store) ConfigFor(bucket string) Config { return s.at(bucket).cfg }

// RemoteOf is the remote that holds bucket, without its keys; ok is false
// for a bucket of the default server.
func (s *Store) RemoteOf(bucket string) (r Remote, ok bool) {
	if rs := s.at(bucket); rs.remote != nil {
		return rs.remote.withoutKeys(), true
	}
	return Remote{}, false
}

// Remote is the remote called name, without its keys; an unknown name is
// ErrUnknownRemote, naming the ones there are.
func (s *Store) Remote(name string) (Remote, error) {
	var names []string
	for _, r := range s.remotes {
		if r.remote.Name == name {
			return r.remote.withoutKeys(), nil
		}
		names = append(names, r.remote.Name)
	}
	if len(names) == 0 {
		return Remote{}, fmt.Errorf("%w %q: the services have none configured (%s)", ErrUnknownRemote, name, EnvRemotes)
	}
	return Remote{}, fmt.Errorf("%w %q (remotes: %s)", ErrUnknownRemote, name, strings.Join(names, ", "))
}

// newStore connects a Store to one server; remote is the remote it is,
// nil for the default server.
func newStore(cfg Config, remote *Remote) (*Store, error) {
	endpoint, secure, err := parseEndpoint(cfg.Endpoint, cfg.Secure)
	if err != nil {
		return nil, err
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if partSize < minPartSize {
		return nil, fmt.Errorf("blob: part size %d is below the S3 minimum of %d bytes", partSize, minPartSize)
	}
	opts := &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure: secure,
		Region: cfg.Region,
	}
	if cfg.CAFile != "" {
		if opts.Transport, err = trustingTransport(cfg.CAFile, secure); err != nil {
			return nil, err
		}
	}
	if remote != nil {
		if opts.Transport, err = namingTransport(opts.Transport, *remote, secure); err != nil {
			return nil, err
		}
	}
	client, err := minio.New(endpoint, opts)
	if err != nil {
		return nil, fmt.Errorf("blob: client for %q: %w", cfg.Endpoint, err)
	}
	return &Store{cfg: cfg, client: client, core: minio.Core{Client: client}, partSize: partSize, region: cfg.Region, remote: remote}, nil
}

// namingTransport is next (minio-go's default when nil) naming remote in
// the errors of requests that got no answer.
func namingTransport(next http.RoundTripper, remote Remote, secure bool) (http.RoundTripper, error) {
	if next == nil {
		tr, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("blob: %w", err)
		}
		next = tr
	}
	return remoteTransport{name: remote.Name, endpoint: remote.Endpoint, next: next}, nil
}

// HTTPClient is an HTTP client for cfg's server besides the S3 API (MinIO's
// admin API, STS), trusting the CAs of cfg.CAFile when one is given, with
// the given timeout.
func HTTPClient(cfg Config, timeout time.Duration) (*http.Client, error) {
	c := &http.Client{Timeout: timeout}
	if cfg.CAFile != "" {
		tr, err := trustingTransport(cfg.CAFile, true)
		if err != nil {
			return nil, err
		}
		c.Transport = tr
	}
	return c, nil
}

// trustingTransport is minio-go's transport trusting the CAs in caFile.
func trustingTransport(caFile string, secure bool) (*http.Transport, error) {
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	pool, err := tlsca.Pool(caFile)
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr.TLSClientConfig.RootCAs = pool
	return tr, nil
}

// parseEndpoint accepts "host:port" or an http(s) URL without a path.
func parseEndpoint(endpoint string, secure bool) (string, bool, error) {
	endpoint = strings.TrimSpace(endpoint)
	if endpoint == "" {
		return "", false, errors.New("blob: empty S3 endpoint")
	}
	if !strings.Contains(endpoint, "://") {
		return endpoint, secure, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, fmt.Errorf("blob: S3 endpoint %q: %w", endpoint, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", false, fmt.Errorf("blob: S3 endpoint %q: scheme must be http or https", endpoint)
	case u.Host == "":
		return "", false, fmt.Errorf("blob: S3 endpoint %q has no host", endpoint)
	case u.Path != "" && u.Path != "/":
		return "", false, fmt.Errorf("blob: S3 endpoint %q: a path (%q) is not supported", endpoint, u.Path)
	}
	return u.Host, u.Scheme == "https", nil
}

// SameEndpoint reports whether endpoint ("host:port" or an http(s) URL)
// names the default server the Store talks to, as New reads it.
func (s *Store) SameEndpoint(endpoint string) bool {
	return sameEndpoint(endpoint, s.cfg.Endpoint, s.cfg.Secure)
}

// sameEndpoint reports whether two endpoints name one server; secure is
// what a "host:port" without a scheme means.
func sameEndpoint(a, b string, secure bool) bool {
	host, aSecure, err := parseEndpoint(a, secure)
	other, bSecure, berr := parseEndpoint(b, secure)
	return err == nil && berr == nil && strings.EqualFold(host, other) && aSecure == bSecure
}

// EndpointURL is cfg's endpoint as scheme://host[:port], read as New reads
// it: what a client of the server's other APIs (MinIO admin, STS) calls.
func (c Config) EndpointURL() (string, error) {
	host, secure, err := parseEndpoint(c.Endpoint, c.Secure)
	if err != nil {
		return "", err
	}
	if secure {
		return "https://" + host, nil
	}
	return "http://" + host, nil
}

// Client returns the underlying minio-go client, for what Store does not wrap.
func (s *Store) Client() *minio.Client { return s.client }

// Config is what the store was made with (its keys too: a service hands
// them to no one, it uses them to ask an STS for narrower ones).
func (s *Store) Config() Config { return s.cfg }

// EnsureBucket creates bucket unless it exists. Concurrent callers racing to
// create the same bucket all succeed.
func (s *Store) EnsureBucket(ctx context.Context, bucket string) error {
	_, err := s.CreateBucket(ctx, bucket)
	return err
}

// CreateBucket is EnsureBucket saying whether this call made the bucket.
func (s *Store) CreateBucket(ctx context.Context, bucket string) (made bool, err error) {
	c := s.at(bucket)
	ok, err := c.client.BucketExists(ctx, bucket)
	if IsDenied(err) {
		return false, c.notProvisioned(bucket, err)
	}
	if err != nil {
		return false, wrapErr("check bucket", bucket, "", err)
	}
	if ok {
		return false, nil
	}
	err = c.client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: c.region})
	if err == nil {
		return true, nil
	}
	switch minio.ToErrorResponse(err).Code {
	case "BucketAlreadyOwnedByYou", "BucketAlreadyExists":
		// Someone else created it between our check and our create.
		if ok, e := c.client.BucketExists(ctx, bucket); e == nil && ok {
			return false, nil
		}
	case "AccessDenied":
		return false, c.notProvisioned(bucket, err)
	}
	return false, wrapErr("create bucket", bucket, "", err)
}

// ErrBucketNotEmpty is RemoveEmptyBucket's error for a bucket that holds
// objects.
var ErrBucketNotEmpty = errors.New("the bucket holds objects")

// RemoveEmptyBucket removes bucket if it holds no object; a missing
// bucket is not an error. S3 itself refuses to remove a bucket that holds
// objects (ErrBucketNotEmpty), so nothing anyone wrote is ever lost.
func (s *Store) RemoveEmptyBucket(ctx context.Context, bucket string) error {
	err := s.at(bucket).client.RemoveBucket(ctx, bucket)
	switch {
	case err == nil, minio.ToErrorResponse(err).Code == minio.NoSuchBucket:
		return nil
	case minio.ToErrorResponse(err).Code == "BucketNotEmpty":
		return fmt.Errorf("remove bucket %s: %w", bucket, ErrBucketNotEmpty)
	}
	return wrapErr("remove bucket", bucket, "", err)
}

// notProvisioned says why a service's keys cannot reach or make bucket:
// its own keys may not make buckets (provisioning does), nor see one
// outside their policy.
func (s *Store) notProvisioned(bucket string, err error) error {
	if s.remote != nil {
		return fmt.Errorf("bucket %s: the keys of S3 remote %q (%s) may not use or create it: allow them on the bucket, or create it there: %w",
			bucket, s.remote.Name, s.remote.Endpoint, err)
	}
	return fmt.Errorf("bucket %s: these S3 keys (%s) may not use or create it: buckets are made, and each service's keys allowed on them, by provisioning (`slipway s3 provision`, or `slipway up`): %w",
		bucket, s.cfg.AccessKey, err)
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Bucket, Key  string
	Size         int64
	ETag         string
	ContentType  string
	LastModified time.Time
	// Command is the MetaCommand metadata: the command whose job wrote
	// the object ("" when none was recorded).
	Command string
	// S3Checksum is the object's SHA-256 additional checksum as the store
	// keeps it (see Info.S3Checksum); only StatChecksum asks for it.
	S3Checksum string
}

// Stat describes an object; IsNotFound(err) tells a missing one.
func (s *Store) Stat(ctx context.Context, bucket, key string) (ObjectInfo, error) {
	return s.stat(ctx, bucket, key, minio.StatObjectOptions{})
}

// StatChecksum is Stat with the object's SHA-256 additional checksum
// (a HEAD with checksum mode enabled): "" when the object has none.
func (s *Store) StatChecksum(ctx context.Context, bucket, key string) (ObjectInfo, error) {
	return s.stat(ctx, bucket, key, minio.StatObjectOptions{Checksum: true})
}

func (s *Store) stat(ctx context.Context, bucket, key string, opts minio.StatObjectOptions) (ObjectInfo, error) {
	c := s.at(bucket)
	oi, err := c.client.StatObject(ctx, bucket, key, opts)
	if err != nil {
		return ObjectInfo{}, wrapErr("stat", bucket, key, err)
	}
	return ObjectInfo{
		Bucket: bucket, Key: key, Size: oi.Size, ETag: oi.ETag,
		ContentType: oi.ContentType, LastModified: oi.LastModified,
		Command:    oi.UserMetadata[MetaCommand],
		S3Checksum: oi.ChecksumSHA256,
	}, nil
}

// Get opens an object for reading and returns its size. The caller closes
// the reader.
func (s *Store) Get(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error) {
	c := s.at(bucket)
	obj, err := c.client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, wrapErr("get", bucket, key, err)
	}
	// GetObject is lazy; Stat makes a missing object fail here rather than
	// on the first Read.
	oi, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, 0, wrapErr("get", bucket, key, err)
	}
	return obj, oi.Size, nil
}

// GetRange opens an object for reading from offset to its end.
func (s *Store) GetRange(ctx context.Context, bucket, key string, offset int64) (io.ReadCloser, error) {
	c := s.at(bucket)
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", URL(bucket, key), offset)
	}
	opts := minio.GetObjectOptions{}
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, fmt.Errorf("get %s from %d: %w", URL(bucket, key), offset, err)
		}
	}
	rc, _, _, err := c.core.GetObject(ctx, bucket, key, opts)
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("get from offset %d", offset), bucket, key, err)
	}
	return rc, nil
}

// SHA256 streams an object and returns the hex SHA-256 of its content and
// its size, to verify what was stored.
func (s *Store) SHA256(ctx context.Context, bucket, key string) (string, int64, error) {
	rc, _, err := s.Get(ctx, bucket, key)
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return "", n, wrapErr("hash", bucket, key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Delete removes an object; a missing object (or bucket) is not an error.
func (s *Store) Delete(ctx context.Context, bucket, key string) error {
	c := s.at(bucket)
	err := c.client.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{})
	if err != nil && !IsNotFound(err) {
		return wrapErr("delete", bucket, key, err)
	}
	return nil
}

// DeleteURL deletes the object an s3:// URL names; a missing object is not
// an error, a URL that names no object is.
func (s *Store) DeleteURL(ctx context.Context, u string) error {
	bucket, key, err := ParseURL(u)
	if err != nil {
		return err
	}
	return s.Delete(ctx, bucket, key)
}

// ErrTaken is returned by CheckFresh for an object another command wrote.
var ErrTaken = errors.New("object exists and was written by another command")

// CheckFresh makes sure a job of command commandID may write bucket/key:
// no object is there, or the one there was written by the same command (an
// earlier delivery of it). A job never overwrites what it did not write.
func (s *Store) CheckFresh(ctx context.Context, bucket, key, commandID string) error {
	oi, err := s.Stat(ctx, bucket, key)
	switch {
	case IsNotFound(err):
		return nil
	case err != nil:
		return err
	case commandID != "" && oi.Command == commandID:
		return nil
	}
	return fmt.Errorf("%s: %w", URL(bucket, key), ErrTaken)
}

// DeleteIfOwned deletes the object at u only if command commandID wrote it
// (see OwnedBy): a failed job's clean-up never removes an object another
// job wrote. A missing object, or one owned by another command, is left
// alone and reported as not deleted.
func (s *Store) DeleteIfOwned(ctx context.Context, u, commandID string) (bool, error) {
	bucket, key, err := ParseURL(u)
	if err != nil {
		return false, err
	}
	oi, err := s.Stat(ctx, bucket, key)
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if commandID == "" || oi.Command != commandID {
		return false, nil
	}
	if err := s.Delete(ctx, bucket, key); err != nil {
		return false, err
	}
	return true, nil
}

// DeletePrefix removes every object whose key starts with prefix, and
// aborts incomplete multipart uploads under it.
func (s *Store) DeletePrefix(ctx context.Context, bucket, prefix string) error {
	c := s.at(bucket)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing if removal fails midway
	objects := c.client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true})
	var listErr error
	toRemove := make(chan minio.ObjectInfo)
	go func() {
		defer close(toRemove)
		for o := range objects {
			if o.Err != nil {
				listErr = o.Err
				return
			}
			select {
			case toRemove <- o:
			case <-ctx.Done():
				return
			}
		}
	}()
	var firstErr error
	for r := range c.client.RemoveObjects(ctx, bucket, toRemove, minio.RemoveObjectsOptions{}) {
		if r.Err != nil && firstErr == nil && !IsNotFound(r.Err) {
			firstErr = wrapErr("delete", bucket, r.ObjectName, r.Err)
		}
	}
	if listErr != nil && !IsNotFound(listErr) {
		return wrapErr("list for delete", bucket, prefix, listErr)
	}
	if firstErr != nil {
		return firstErr
	}
	return s.AbortIncomplete(ctx, bucket, prefix)
}

// AbortIncomplete aborts the incomplete multipart uploads under prefix:
// what a writer killed in the middle of an upload leaves behind.
func (s *Store) AbortIncomplete(ctx context.Context, bucket, prefix string) error {
	c := s.at(bucket)
	// MinIO lists multipart uploads by exact key only, so list all of the
	// bucket's and filter here.
	for u := range c.client.ListIncompleteUploads(ctx, bucket, "", true) {
		if u.Err == nil && !strings.HasPrefix(u.Key, prefix) {
			continue
		}
		if u.Err != nil {
			if IsNotFound(u.Err) {
				return nil
			}
			return wrapErr("list incomplete uploads", bucket, prefix, u.Err)
		}
		if err := c.core.AbortMultipartUpload(ctx, bucket, u.Key, u.UploadID); err != nil && !IsNotFound(err) {
			return wrapErr("abort upload", bucket, u.Key, err)
		}
	}
	return nil
}

// List returns the keys under prefix, recursively, in lexical order.
func (s *Store) List(ctx context.Context, bucket, prefix string) ([]string, error) {
	var keys []string
	for o, err := range s.Objects(ctx, bucket, prefix) {
		if err != nil {
			return nil, err
		}
		keys = append(keys, o.Key)
	}
	return keys, nil
}

// Objects describes the objects under prefix, recursively, in lexical
// order, as S3 lists them (no metadata: Command and S3Checksum are "")
// and one page at a time, so a bucket of any size takes no more memory
// than a page. A listing that fails yields its error last.
func (s *Store) Objects(ctx context.Context, bucket, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		c := s.at(bucket)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // a caller that stops early ends the listing
		for o := range c.client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err != nil {
				yield(ObjectInfo{}, wrapErr("list", bucket, prefix, o.Err))
				return
			}
			info := ObjectInfo{Bucket: bucket, Key: o.Key, Size: o.Size, ETag: o.ETag, ContentType: o.ContentType, LastModified: o.LastModified}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// PresignGet returns a URL anyone can GET the object with until ttl passes.
func (s *Store) PresignGet(ctx context.Context, bucket, key string, ttl time.Duration) (*url.URL, error) {
	c := s.at(bucket)
	u, err := c.client.PresignedGetObject(ctx, bucket, key, ttl, nil)
	if err != nil {
		return nil, wrapErr("presign get", bucket, key, err)
	}
	return u, nil
}

// PresignPut returns a URL anyone can PUT the object's content to until ttl
// passes.
func (s *Store) PresignPut(ctx context.Context, bucket, key string, ttl time.Duration) (*url.URL, error) {
	c := s.at(bucket)
	u, err := c.client.PresignedPutObject(ctx, bucket, key, ttl)
	if err != nil {
		return nil, wrapErr("presign put", bucket, key, err)
	}
	return u, nil
}
