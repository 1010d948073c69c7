package marketdockerhub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/schemas"
)

// AttrImport is the image attribute holding the ce-id of the app-import
// that created the image: a redelivered import finds its image by it.
const AttrImport = "MARKETPLACE_IMPORT"

// catalogCallTimeout bounds the wait for the catalog's image-created; a
// longer silence (the catalog down) retries the import.
const catalogCallTimeout = 30 * time.Second

// appImport has the catalog create an image of the app (path docker://…)
// and waits for its ID, then sends the launcher a VM template whose disk
// is that image (DISK = [ IMAGE_ID = N ]), keeps the template for
// app-show and reports app-imported. The catalog's refusal (a taken name,
// an unknown datastore) refuses the import with the catalog's message. It
// does not wait for the image to be built: the catalog's events say how
// that fares.
func (s *Service) appImport(ctx context.Context, m *bus.Msg) error {
	var req AppImport
	if err := decode(m, &req); err != nil {
		return err
	}
	mk, app, err := s.importedApp(ctx, m, req)
	if err != nil {
		return err
	}
	src, err := importURL(mk, app, req)
	if err != nil {
		return &refusal{err}
	}
	imageID, err := s.importImage(ctx, m, mk, app, req, src)
	if err != nil {
		return err
	}
	tmpl := VMTemplate(req.Name, s.cfg.User, s.cfg.Kernel, imageID, app)
	if _, err := s.bus.Command(ctx, schemas.ServiceLauncher, schemas.CommandLauncherTemplateCreate, TemplateCreate{Name: req.Name, Template: tmpl, OnBehalfOf: bus.UserOf(m)},
		causedBy(m.Envelope, schemas.CommandLauncherTemplateCreate)...); err != nil {
		return err
	}
	if err := s.store.putTemplate(ctx, mk.ID, app.Name, tmpl); err != nil {
		return err
	}
	ev := AppImported{MarketID: mk.ID, App: app.Name, Name: req.Name, URL: src, ImageID: imageID, Template: tmpl}
	_, err = s.bus.Event(ctx, schemas.EventMarketDockerhubAppImported, idToken(mk.ID), ev, causedBy(m.Envelope, schemas.EventMarketDockerhubAppImported)...)
	return err
}

// importedApp finds the marketplace and the app an import names. Importing
// is using the marketplace: a sender who may not is refused (forbidden)
// before its apps are looked at.
func (s *Service) importedApp(ctx context.Context, m *bus.Msg, req AppImport) (Market, App, error) {
	mk, _, err := s.store.market(ctx, req.MarketID)
	if errors.Is(err, ErrNotFound) {
		return mk, App{}, missing("marketplace %d does not exist", req.MarketID)
	}
	if err != nil {
		return mk, App{}, err
	}
	u, service, err := s.asker(ctx, m.Sender)
	if err != nil {
		return mk, App{}, err
	}
	if err := mayUse(u, service, &mk, m.Name); err != nil {
		return mk, App{}, &refusal{bus.WithCode(schemas.CodeForbidden, err)}
	}
	app, err := s.store.app(ctx, req.MarketID, req.App)
	if errors.Is(err, ErrNotFound) {
		return mk, app, missing("marketplace %d (%s) has no app %q (refresh it, or check the name)", mk.ID, mk.Name, req.App)
	}
	return mk, app, err
}

// importImage returns the ID of the image an import creates, asking the
// catalog once per import: the answer is remembered under the command's
// ce-id, because a repeated image-create would get no answer (JetStream
// and the catalog both drop a command they have seen).
func (s *Service) importImage(ctx context.Context, m *bus.Msg, mk Market, app App, req AppImport, src string) (int64, error) {
	key := "import." + enc(m.Envelope.ID)
	if e, err := s.dedup.Get(ctx, key); err == nil {
		return strconv.ParseInt(string(e.Value()), 10, 64)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, err
	}
	id, found, err := s.importedBefore(ctx, m, req.Name)
	if err != nil {
		return 0, err
	}
	if !found {
		if id, err = s.createImage(ctx, m, mk, app, req, src); err != nil {
			return 0, err
		}
	}
	if _, err := s.dedup.Put(ctx, key, []byte(idToken(id))); err != nil {
		return 0, err
	}
	return id, nil
}

// importedBefore finds, on a redelivery, the image an earlier delivery of
// the same import had the catalog create when its answer was lost: the
// image of that name whose AttrImport is the command's ce-id.
func (s *Service) importedBefore(ctx context.Context, m *bus.Msg, name string) (int64, bool, error) {
	if m.Delivered <= 1 {
		return 0, false, nil
	}
	var img schemas.Image
	err := s.bus.Query(ctx, schemas.ServiceCatalog, schemas.QueryCatalogShow, map[string]string{"name": name}, &img)
	if bus.IsNotFound(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look for image %q of an earlier delivery: %w", name, err)
	}
	if img.Attributes[AttrImport] != m.Envelope.ID {
		return 0, false, nil // someone else's: image-create gets the catalog's refusal
	}
	return img.ID, true, nil
}

// createImage asks the catalog for the image and waits for its ID.
func (s *Service) createImage(ctx context.Context, m *bus.Msg, mk Market, app App, req AppImport, src string) (int64, error) {
	create := schemas.ImageCreate{Name: req.Name, Datastore: req.Datastore, Type: schemas.ImageTypeOS,
		Path: src, Description: app.Description, OnBehalfOf: bus.UserOf(m),
		Attributes: map[string]string{"MARKETPLACE": mk.Name, "MARKETPLACE_APP": app.Name, AttrImport: m.Envelope.ID}}
	if len(create.Description) > 1024 {
		create.Description = create.Description[:1024]
	}
	cctx, cancel := context.WithTimeout(ctx, catalogCallTimeout)
	defer cancel()
	ans, err := s.bus.Call(cctx, schemas.ServiceCatalog, schemas.CommandCatalogImageCreate, create, []string{schemas.EventCatalogImageCreated},
		causedBy(m.Envelope, schemas.CommandCatalogImageCreate)...)
	var ce *bus.CallError
	if errors.As(err, &ce) {
		// The catalog's code (a taken name: conflict) is the refusal's.
		return 0, &refusal{bus.WithCode(ce.Code, fmt.Errorf("the catalog refused image %q: %s", req.Name, ce.Message))}
	}
	if err != nil {
		return 0, err
	}
	var img schemas.Image
	if err := json.Unmarshal(ans.Data, &img); err != nil {
		return 0, fmt.Errorf("the catalog's %s for %q: %w", schemas.EventCatalogImageCreated, req.Name, err)
	}
	return img.ID, nil
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
