package marketdockerhub

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/schemas"
)

// The service's drivers (package market's Driver): Docker Hub's official
// images through Hub's API, and an OCI registry's repositories. Both
// import by docker:// URL, which the catalog resolves through this
// service.

// hubDriver lists Docker Hub (MAD dockerhub).
type hubDriver struct{ s *Service }

func (d hubDriver) Validate(mk *Market) error {
	if mk.Registry != "" || mk.Insecure {
		return errors.New("a Docker Hub marketplace has no registry: give its API as the endpoint")
	}
	if mk.Endpoint == "" {
		mk.Endpoint = d.s.cfg.HubAPI
	}
	return nil
}

func (d hubDriver) List(ctx context.Context, mk Market) ([]App, error) {
	apps, err := hub{base: mk.Endpoint, client: d.s.hubClient, log: d.s.log}.list(ctx)
	return versioned(apps), err
}

func (d hubDriver) ImageCreate(mk Market, app App, req AppImport) (schemas.ImageCreate, error) {
	return dockerImage(mk, app, req)
}

// registryDriver lists an OCI registry (MAD registry).
type registryDriver struct{ s *Service }

func (d registryDriver) Validate(mk *Market) error {
	if mk.Endpoint != "" {
		return errors.New("a registry marketplace has no endpoint: give the registry as host[:port]")
	}
	return validRegistry(mk.Registry)
}

func (d registryDriver) List(ctx context.Context, mk Market) ([]App, error) {
	apps, err := registryLister{host: mk.Registry, insecure: mk.Insecure, transport: d.s.cfg.Guard.Transport(), log: d.s.log}.list(ctx)
	return versioned(apps), err
}

func (d registryDriver) ImageCreate(mk Market, app App, req AppImport) (schemas.ImageCreate, error) {
	return dockerImage(mk, app, req)
}

// versioned gives each repository the version OpenNebula's refresh rules
// compare: its default tag (an import without a tag takes it), and the
// kind of what it carries.
func versioned(apps []App) []App {
	for i := range apps {
		apps[i].Version = dockerurl.PickTag(apps[i].Tags)
		apps[i].Kind = schemas.MarketAppKindContainer
	}
	return apps
}

// validRegistry checks a registry host[:port] the way references use it.
func validRegistry(host string) error {
	if host == "" {
		return errors.New("give the registry as host[:port]")
	}
	if strings.Contains(host, "://") || strings.ContainsAny(host, "/ ?#@") {
		return fmt.Errorf("registry %q: want host[:port], without a scheme or a path", host)
	}
	return nil
}

// dockerImage is the image-create of an import of a repository: an OS
// image from its docker:// URL.
func dockerImage(mk Market, app App, req AppImport) (schemas.ImageCreate, error) {
	src, err := importURL(mk, app, req)
	if err != nil {
		return schemas.ImageCreate{}, err
	}
	return schemas.ImageCreate{Type: schemas.ImageTypeOS, Path: src}, nil
}

// importURL is the docker:// URL an import of app sends the catalog,
// checked by the same parser the catalog's saga uses.
func importURL(mk Market, app App, req AppImport) (string, error) {
	u := dockerurl.URL{Repository: app.Name, Tag: req.Tag, SizeMiB: req.SizeMiB,
		Filesystem: string(req.Filesystem), Format: string(req.Format)}
	if mk.Mad == MADRegistry {
		u.Registry = mk.Registry
	} else if u.Repository != "" && !strings.Contains(u.Repository, "/") {
		u.Repository = "library/" + u.Repository
	}
	if u.Tag == "" {
		u.Tag = dockerurl.PickTag(app.Tags)
	}
	if u.Filesystem == "" {
		u.Filesystem = dockerurl.DefaultFilesystem
	}
	if u.Format == "" {
		u.Format = dockerurl.DefaultFormat
	}
	s := u.String()
	parsed, err := dockerurl.Parse(s)
	if err != nil {
		return "", fmt.Errorf("import %s of %s: %w", app.Name, mk.Name, err)
	}
	if parsed != u {
		return "", fmt.Errorf("import %s of %s: %s does not say what was asked (%+v, parsed as %+v)", app.Name, mk.Name, s, u, parsed)
	}
	return s, nil
}
