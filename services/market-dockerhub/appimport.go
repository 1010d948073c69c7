package marketdockerhub

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/schemas"
)

// Services the import talks to.
const (
	catalogService    = "catalog"
	launcherService   = "launcher"
	cmdImageCreate    = "image-create"
	cmdTemplateCreate = "template-create"
)

// appImport asks the catalog for an image of the app (path docker://…)
// and the launcher for its VM template, in the command's saga, and keeps
// the template for app-show. It waits for neither: the catalog's events
// say how the image fares.
func (s *Service) appImport(ctx context.Context, m *bus.Msg) error {
	var req AppImport
	if err := decode(m, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return refuse("app-import: give the name of the image to create")
	}
	mk, _, err := s.store.market(ctx, req.MarketID)
	if errors.Is(err, ErrNotFound) {
		return refuse("marketplace %d does not exist", req.MarketID)
	}
	if err != nil {
		return err
	}
	app, err := s.store.app(ctx, req.MarketID, req.App)
	if errors.Is(err, ErrNotFound) {
		return refuse("marketplace %d (%s) has no app %q (refresh it, or check the name)", mk.ID, mk.Name, req.App)
	}
	if err != nil {
		return err
	}
	src, err := importURL(mk, app, req)
	if err != nil {
		return &refusal{err}
	}
	create := schemas.ImageCreate{Name: req.Name, Datastore: req.Datastore, Type: schemas.ImageType("OS"),
		Path: src, Description: app.Description,
		Attributes: map[string]string{"MARKETPLACE": mk.Name, "MARKETPLACE_APP": app.Name}}
	if len(create.Description) > 1024 {
		create.Description = create.Description[:1024]
	}
	if _, err := s.bus.Command(ctx, catalogService, cmdImageCreate, create, causedBy(m.Envelope, cmdImageCreate)...); err != nil {
		return err
	}
	tmpl := VMTemplate(req.Name, s.cfg.User, -1, app)
	if _, err := s.bus.Command(ctx, launcherService, cmdTemplateCreate, TemplateCreate{Name: req.Name, Template: tmpl},
		causedBy(m.Envelope, cmdTemplateCreate)...); err != nil {
		return err
	}
	if err := s.store.putTemplate(ctx, mk.ID, app.Name, tmpl); err != nil {
		return err
	}
	ev := AppImported{MarketID: mk.ID, App: app.Name, Name: req.Name, URL: src, Template: tmpl}
	_, err = s.bus.Event(ctx, EvtAppImported, idToken(mk.ID), ev, causedBy(m.Envelope, EvtAppImported)...)
	return err
}

// importURL is the docker:// URL an import of app sends the catalog,
// checked by the same parser the catalog's saga uses.
func importURL(mk Market, app App, req AppImport) (string, error) {
	u := dockerurl.URL{Repository: app.Name, Tag: req.Tag, SizeMiB: req.SizeMiB,
		Filesystem: req.Filesystem, Format: req.Format}
	if mk.MAD == MADRegistry {
		u.Registry = mk.Registry
	} else if u.Repository != "" && !strings.Contains(u.Repository, "/") {
		u.Repository = "library/" + u.Repository
	}
	if u.Tag == "" {
		u.Tag = app.DefaultTag()
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
