package marketdockerhub

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway/slipway/pkg/dockerurl"
)

// Bounds of one registry listing.
const (
	registryMaxRepos = 10000
	registryParallel = 4
)

// registryLister lists an OCI registry's repositories (/v2/_catalog) and
// each one's tags (/v2/<repo>/tags/list).
type registryLister struct {
	host      string
	insecure  bool
	transport http.RoundTripper // the guard's
	log       *slog.Logger
}

func (r registryLister) options(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}), remote.WithTransport(r.transport)}
}

func (r registryLister) registry() (name.Registry, error) {
	var opts []name.Option
	if r.insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(r.host, opts...)
	if err != nil {
		return reg, fmt.Errorf("registry %q: %w", r.host, err)
	}
	return reg, nil
}

func (r registryLister) list(ctx context.Context) ([]App, error) {
	reg, err := r.registry()
	if err != nil {
		return nil, err
	}
	repos, err := remote.Catalog(ctx, reg, r.options(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("registry %s: list repositories: %w", r.host, err)
	}
	if len(repos) > registryMaxRepos {
		return nil, fmt.Errorf("registry %s: %d repositories, more than the %d a marketplace lists", r.host, len(repos), registryMaxRepos)
	}
	apps := make([]App, len(repos))
	errs := make([]error, len(repos))
	var wg sync.WaitGroup
	sem := make(chan struct{}, registryParallel)
	for i, repo := range repos {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			apps[i], errs[i] = r.app(ctx, reg, repo)
		}()
	}
	wg.Wait()
	out := apps[:0]
	for i, err := range errs {
		if err != nil {
			// A repository that vanished between the catalog and its tag
			// list, or one we may not read, is left out; the rest stands.
			r.log.Warn("registry: listing a repository", "registry", r.host, "repository", repos[i], "err", err)
			continue
		}
		out = append(out, apps[i])
	}
	if len(out) == 0 && len(repos) > 0 {
		return nil, fmt.Errorf("registry %s: no repository could be listed: %w", r.host, errs[0])
	}
	return out, nil
}

// app lists one repository's tags and the size of its default tag.
func (r registryLister) app(ctx context.Context, reg name.Registry, repo string) (App, error) {
	ref := reg.Repo(repo)
	tags, err := remote.List(ref, r.options(ctx)...)
	if err != nil {
		return App{}, fmt.Errorf("list tags of %s: %w", ref, err)
	}
	slices.Sort(tags)
	a := App{Name: repo, Tags: tags, Source: "docker://" + r.host + "/" + repo}
	if len(tags) > 0 {
		a.Size = r.size(ctx, ref.Tag(dockerurl.PickTag(a.Tags)))
	}
	return a, nil
}

// size is the compressed size of a tag's layers for this host's platform,
// 0 when it cannot be told (an index without the platform, an error).
func (r registryLister) size(ctx context.Context, ref name.Tag) int64 {
	img, err := remote.Image(ref, r.options(ctx)...)
	if err != nil {
		return 0
	}
	m, err := img.Manifest()
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}
