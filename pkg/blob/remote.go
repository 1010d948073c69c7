package blob

// Remotes: S3 servers besides the default one, that hold the buckets of
// some created datastores (an archive tier, a second MinIO). An operator
// configures them on every service with one file (SLIPWAY_S3_REMOTES,
// read by ReadRemotes); a datastore's template names a remote by its name
// (CREDENTIALS, a reference, never a secret). Which bucket lives where is
// the remotes file's bucket patterns, the same for every service, so a
// service derives a blob's server from the bucket it derived, and a
// Store routes each call by its bucket (Store.at).

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// EnvRemotes names the remotes file (see ReadRemotes).
const EnvRemotes = "SLIPWAY_S3_REMOTES"

// Remote is an S3 server that holds the buckets of some datastores.
type Remote struct {
	// Name is what a datastore template's CREDENTIALS names.
	Name string `json:"name"`
	// Endpoint is how the services reach the server ("host:port" or an
	// http(s) URL; a datastore template's ENDPOINT must name it).
	Endpoint string `json:"endpoint"`
	// PublicEndpoint is how users reach it, for presigned URLs and
	// temporary keys; "" means Endpoint.
	PublicEndpoint string `json:"public_endpoint,omitempty"`
	Region         string `json:"region,omitempty"`
	// CAFile is a PEM file of the CAs trusted for an https endpoint; ""
	// means the default store's (SLIPWAY_CA).
	CAFile string `json:"ca_file,omitempty"`
	// KeysFile is a keys file (ReadKeys) of this service's keys on the
	// server, relative to the remotes file's directory unless absolute.
	KeysFile string `json:"keys_file"`
	// Buckets are the buckets the server holds: names, or prefixes ending
	// in "*", all under DatastoreBucketPrefix (only created datastores
	// can live on a remote).
	Buckets []string `json:"buckets"`
	// Keys are read from KeysFile; they are never marshalled.
	Keys Keys `json:"-"`
}

// remotesFile is the remotes file's form.
type remotesFile struct {
	Remotes []Remote `json:"remotes"`
}

// remoteName is the form of a remote's name: a datastore template word.
var remoteName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// IsRemoteName reports whether name has the form of a remote's name (a
// value that does not may be a key pasted by mistake: never repeat it).
func IsRemoteName(name string) bool { return remoteName.MatchString(name) }

// DefaultRemote is what a datastore's CREDENTIALS names for the default
// server (the services' own keys); no remote may take the name.
const DefaultRemote = "default"

// ReadRemotes reads a remotes file:
//
//	{"remotes": [{"name": "archive", "endpoint": "https://archive:9000",
//	  "public_endpoint": "https://archive.example", "region": "us-east-1",
//	  "ca_file": "archive-ca.pem", "keys_file": "archive.json",
//	  "buckets": ["slipway-ds-archive-*"]}]}
//
// and each remote's keys. An error names the file and the remote, never a
// key.
func ReadRemotes(path string) ([]Remote, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("s3 remotes: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields() // a key pasted here is refused, not kept
	var f remotesFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("s3 remotes %s: %w", path, err)
	}
	for i := range f.Remotes {
		r := &f.Remotes[i]
		if r.KeysFile == "" {
			return nil, fmt.Errorf("s3 remotes %s: remote %q: keys_file is missing", path, r.Name)
		}
		kf := r.KeysFile
		if !filepath.IsAbs(kf) {
			kf = filepath.Join(filepath.Dir(path), kf)
		}
		if r.Keys, err = ReadKeys(kf); err != nil {
			return nil, fmt.Errorf("s3 remotes %s: remote %q: %w", path, r.Name, err)
		}
	}
	if err := checkRemotes(f.Remotes); err != nil {
		return nil, fmt.Errorf("s3 remotes %s: %w", path, err)
	}
	return f.Remotes, nil
}

// checkRemotes refuses remotes without a usable name, endpoint, keys or
// buckets, and two remotes that could hold the same bucket.
func checkRemotes(rs []Remote) error {
	seen := map[string]bool{}
	for i, r := range rs {
		if !remoteName.MatchString(r.Name) || r.Name == DefaultRemote {
			return fmt.Errorf("remote %q: a name is 1-63 lower-case letters, digits, '_' and '-', starting with a letter, not %q", r.Name, DefaultRemote)
		}
		if seen[r.Name] {
			return fmt.Errorf("remote %q is named twice", r.Name)
		}
		seen[r.Name] = true
		for _, e := range []string{r.Endpoint, cmp.Or(r.PublicEndpoint, r.Endpoint)} {
			if _, _, err := parseEndpoint(e, false); err != nil {
				return fmt.Errorf("remote %q: %w", r.Name, err)
			}
		}
		if r.Keys.AccessKey == "" || r.Keys.SecretKey == "" {
			return fmt.Errorf("remote %q: no keys", r.Name)
		}
		if len(r.Buckets) == 0 {
			return fmt.Errorf("remote %q: buckets is empty: name the buckets it holds (%s…, or a prefix ending in *)", r.Name, DatastoreBucketPrefix)
		}
		for _, p := range r.Buckets {
			if err := checkBucketPattern(p); err != nil {
				return fmt.Errorf("remote %q: %w", r.Name, err)
			}
			for _, o := range rs[:i] {
				for _, q := range o.Buckets {
					if patternsOverlap(p, q) {
						return fmt.Errorf("remotes %q (%s) and %q (%s) could both hold a bucket: a bucket lives on one server", o.Name, q, r.Name, p)
					}
				}
			}
		}
	}
	return nil
}

// checkBucketPattern accepts a datastore bucket name, or a prefix of
// them ending in "*".
func checkBucketPattern(p string) error {
	name, prefix := strings.CutSuffix(p, "*")
	if !strings.HasPrefix(name, DatastoreBucketPrefix) || len(name) == len(DatastoreBucketPrefix) {
		return fmt.Errorf("bucket %q: a remote holds only created datastores' buckets, %s<something> (or a prefix of them ending in *)", p, DatastoreBucketPrefix)
	}
	probe := name
	if prefix {
		probe += "x"
	}
	if err := s3utils.CheckValidBucketNameStrict(probe); err != nil {
		return fmt.Errorf("bucket %q: %w", p, err)
	}
	return nil
}

// patternMatches reports whether bucket is one pattern p names.
func patternMatches(p, bucket string) bool {
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		return strings.HasPrefix(bucket, prefix)
	}
	return p == bucket
}

// patternsOverlap reports whether some bucket matches both patterns.
func patternsOverlap(p, q string) bool {
	pp, pPrefix := strings.CutSuffix(p, "*")
	qp, qPrefix := strings.CutSuffix(q, "*")
	switch {
	case pPrefix && qPrefix:
		return strings.HasPrefix(pp, qp) || strings.HasPrefix(qp, pp)
	case pPrefix:
		return strings.HasPrefix(qp, pp)
	case qPrefix:
		return strings.HasPrefix(pp, qp)
	}
	return p == q
}

// Holds reports whether bucket lives on the remote.
func (r Remote) Holds(bucket string) bool {
	for _, p := range r.Buckets {
		if patternMatches(p, bucket) {
			return true
		}
	}
	return false
}

// Names reports whether endpoint (as a datastore template writes it)
// names the remote: its endpoint or its public one.
func (r Remote) Names(endpoint string) bool {
	return sameEndpoint(endpoint, r.Endpoint, false) ||
		r.PublicEndpoint != "" && sameEndpoint(endpoint, r.PublicEndpoint, false)
}

// config is how a Store reaches the remote, with base's part size and,
// unless the remote names its own, base's CA.
func (r Remote) config(base Config) Config {
	return Config{Endpoint: r.Endpoint, PublicEndpoint: r.PublicEndpoint, Region: r.Region,
		CAFile: cmp.Or(r.CAFile, base.CAFile), PartSize: base.PartSize, PartsInFlight: base.PartsInFlight}.WithKeys(r.Keys)
}

// withoutKeys is r with its keys left out, for whoever only routes.
func (r Remote) withoutKeys() Remote {
	r.Keys = Keys{}
	return r
}

// remoteTransport names the remote in the errors of requests that never
// got an answer (refused, timed out, TLS), so that a job's error says
// which server was down.
type remoteTransport struct {
	name, endpoint string
	next           http.RoundTripper
}

func (t remoteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, &RemoteError{Remote: t.name, Endpoint: t.endpoint, Err: err}
	}
	return resp, nil
}

// RemoteError is a request to a remote that got no answer.
type RemoteError struct {
	Remote, Endpoint string
	Err              error
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("S3 remote %q (%s) did not answer: %v", e.Remote, e.Endpoint, e.Err)
}

func (e *RemoteError) Unwrap() error { return e.Err }

// ErrUnknownRemote is wrapped by Store.Remote's error for a name no
// remote has.
var ErrUnknownRemote = errors.New("no such S3 remote")
