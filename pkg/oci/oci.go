// Package oci is Slipway's registry access, built on go-containerregistry:
// Resolve turns a reference into a pinned, platform-specific manifest and
// tells container images from disks carried in images (RancherVM
// /base_image/, KubeVirt containerDisk /disk/); Pull fetches every layer in
// parallel into a digest-named cache, verifying digest and size; DiskFile
// streams the disk out of a disk-kind image; PushDisk publishes a disk as a
// containerDisk image.
//
// Registries are tried through their configured mirrors first, then the
// origin. Credentials come from a docker config.json. Every connection is
// dialed through package netguard (Options.Guard): a registry on loopback or
// a private address is refused unless SLIPWAY_FETCH_ALLOW opens it. Errors keep the
// registry's own message ("registry 127.0.0.1:5000: MANIFEST_UNKNOWN:
// manifest unknown (tag "nope")"). Nothing here holds a layer in memory.
package oci

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway/slipway/pkg/netguard"
)

// DefaultParallelism is how many layers Pull fetches at once by default.
const DefaultParallelism = 4

// Options configure registry access. The zero value talks to the origin
// registries with credentials from the default docker config.
type Options struct {
	// Mirrors maps a registry host to mirror hosts tried first, in order,
	// e.g. {"index.docker.io": {"127.0.0.1:5001"}}. Docker Hub may be keyed
	// "docker.io" or "index.docker.io". A mirror that fails is skipped.
	Mirrors map[string][]string
	// DockerConfig is the path of a docker config.json. "" uses
	// authn.DefaultKeychain: $HOME/.docker/config.json, else
	// $DOCKER_CONFIG/config.json, else Podman's auth.json.
	DockerConfig string
	// Insecure allows plain-http registries. Loopback and RFC 1918
	// registries use http regardless (go-containerregistry's rule).
	Insecure bool
	// Platform selects the image of a multi-arch index: "linux/amd64",
	// "linux/arm/v7", or a bare architecture ("arm64" = "linux/arm64").
	// "" = linux on the host's architecture.
	Platform string
	// Parallelism is how many layers Pull fetches at once (default 4).
	Parallelism int
	// Guard says which addresses registries, mirrors and token servers
	// may be dialed at: nil refuses loopback, private and other special
	// addresses (see package netguard); netguard.FromEnv reads
	// SLIPWAY_FETCH_ALLOW.
	Guard *netguard.Policy
	// Transport replaces the base HTTP transport, Guard's. Only for a
	// caller that acts for the person running it (the CLI), never for a
	// service fetching what a request names.
	Transport http.RoundTripper
	// Progress, when set, is called as compressed layer bytes reach the
	// cache: done of total bytes. The downloads run in the background, so
	// calls go on after Pull returns, until Image.Wait or Close. Calls are
	// serialized.
	Progress func(done, total int64)
	// MaxBytes caps the compressed layer bytes an image may declare, all
	// layers together; an image over it is refused before any layer is
	// fetched. 0 = DefaultMaxBytes, negative = no cap.
	MaxBytes int64
}

// DefaultMaxBytes is Options.MaxBytes's default: as much as the builder's
// flattener unpacks by default.
const DefaultMaxBytes int64 = 64 << 30

// settings are Options with defaults applied and the platform parsed.
type settings struct {
	Options
	platform         v1.Platform
	explicitPlatform bool
}

func (o Options) settings() (settings, error) {
	s := settings{Options: o, explicitPlatform: o.Platform != ""}
	if s.Parallelism <= 0 {
		s.Parallelism = DefaultParallelism
	}
	p, err := ParsePlatform(o.Platform)
	if err != nil {
		return settings{}, err
	}
	s.platform = p
	return s, nil
}

// ParsePlatform parses "os/arch[/variant]" or a bare "arch[/variant]" (linux
// assumed); "" is linux on the host's architecture.
func ParsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, nil
	}
	if first, _, _ := strings.Cut(s, "/"); !knownOS[first] {
		s = "linux/" + s
	}
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant], e.g. linux/arm64", s)
	}
	return *p, nil
}

var knownOS = map[string]bool{"linux": true, "windows": true, "darwin": true, "freebsd": true, "netbsd": true, "openbsd": true, "illumos": true, "solaris": true, "aix": true, "plan9": true}

// platformString formats a platform as os/arch[/variant].
func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// platformMatches reports whether got satisfies want; a want without a
// variant accepts any variant ("linux/arm64" takes "linux/arm64/v8").
func platformMatches(want, got v1.Platform) bool {
	return want.OS == got.OS && want.Architecture == got.Architecture &&
		(want.Variant == "" || want.Variant == got.Variant)
}

func (s settings) nameOptions() []name.Option {
	opts := []name.Option{name.WeakValidation}
	if s.Insecure {
		opts = append(opts, name.Insecure)
	}
	return opts
}

// source is one place an image can be fetched from: a mirror or the origin.
type source struct {
	repo   name.Repository
	mirror bool
}

// sources lists the mirrors configured for repo's registry, then repo.
func (s settings) sources(repo name.Repository) ([]source, error) {
	hosts := s.Mirrors[repo.RegistryStr()]
	if repo.RegistryStr() == name.DefaultRegistry {
		hosts = append(append([]string(nil), hosts...), s.Mirrors["docker.io"]...)
	}
	var out []source
	for _, h := range hosts {
		m, err := name.NewRepository(h+"/"+repo.RepositoryStr(), s.nameOptions()...)
		if err != nil {
			return nil, fmt.Errorf("mirror %q of %s: %w", h, repo.RegistryStr(), err)
		}
		out = append(out, source{repo: m, mirror: true})
	}
	return append(out, source{repo: repo}), nil
}

// remoteOptions authenticates to src's registry and returns the options for
// go-containerregistry's remote package.
func (s settings) remoteOptions(ctx context.Context, repo name.Repository) ([]remote.Option, credentials, error) {
	cred, err := s.credentials(ctx, repo)
	if err != nil {
		return nil, cred, err
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(cred.auth), remote.WithJobs(s.Parallelism),
		remote.WithTransport(recordAnswers{s.transport()})}, cred, nil
}

// transport is Transport, else Guard's.
func (s settings) transport() http.RoundTripper {
	if s.Transport != nil {
		return s.Transport
	}
	return s.Guard.Transport()
}

// displayName is a repository's name as people write it: Docker Hub's
// "index.docker.io" becomes "docker.io".
func displayName(repo name.Repository) string {
	if repo.RegistryStr() == name.DefaultRegistry {
		return "docker.io/" + repo.RepositoryStr()
	}
	return repo.Name()
}

// retarget points ref (a tag or digest) at another repository, a mirror's.
func retarget(ref name.Reference, repo name.Repository) name.Reference {
	if d, ok := ref.(name.Digest); ok {
		return repo.Digest(d.DigestStr())
	}
	return repo.Tag(ref.Identifier())
}
