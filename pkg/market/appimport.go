package market

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// AttrImport is the image attribute holding the ce-id of the app-import
// that created the image: a redelivered import finds its image by it.
const AttrImport = "MARKETPLACE_IMPORT"

// CatalogCallTimeout bounds the wait for the catalog's image-created; a
// longer silence (the catalog down) retries the import.
const CatalogCallTimeout = 30 * time.Second

// maxImageDescription is what image-create takes of an app's description.
const maxImageDescription = 1024

// appImport has the catalog create an image of the app (what the driver
// says: a docker:// or an http(s):// path) and waits for its ID, then
// sends the launcher a VM template whose disk is that image, keeps the
// template for app-show and reports app-imported. The catalog's refusal (a
// taken name, an unknown datastore) refuses the import with the catalog's
// message. It does not wait for the image to be built: the catalog's
// events say how that fares.
func (s *Service) appImport(ctx context.Context, m *bus.Msg) error {
	var req AppImport
	if err := decode(m, &req); err != nil {
		return err
	}
	mk, app, err := s.importedApp(ctx, m, req)
	if err != nil {
		return err
	}
	d, ok := s.cfg.Drivers[mk.Mad]
	if !ok {
		return &refusal{fmt.Errorf("marketplace %d (%s): %w", mk.ID, mk.Name, &NoDriverError{MAD: mk.Mad})}
	}
	create, err := d.ImageCreate(mk, app, Effective(mk, req))
	if err != nil {
		return &refusal{fmt.Errorf("import %s of %s: %w", app.Name, mk.Name, err)}
	}
	s.fillCreate(&create, m, mk, app, req)
	imageID, err := s.importImage(ctx, m, create)
	if err != nil {
		return err
	}
	tmpl, err := s.vmTemplate(mk, app, req.Name, Disk{ID: imageID})
	if err != nil {
		return &refusal{fmt.Errorf("the VM template of %s: %w", app.Name, err)}
	}
	if _, err := s.bus.Command(ctx, schemas.ServiceLauncher, schemas.CommandLauncherTemplateCreate,
		schemas.LauncherTemplateCreate{Name: req.Name, Template: tmpl, OnBehalfOf: bus.UserOf(m)},
		CausedBy(m.Envelope, schemas.CommandLauncherTemplateCreate)...); err != nil {
		return err
	}
	if err := s.store.putTemplate(ctx, mk.ID, app.Name, tmpl); err != nil {
		return err
	}
	ev := schemas.MarketAppImported{MarketID: mk.ID, App: app.Name, Name: req.Name, URL: create.Path, ImageID: imageID, Template: tmpl}
	_, err = s.bus.Event(ctx, EventAppImported, idToken(mk.ID), ev, CausedBy(m.Envelope, EventAppImported)...)
	return err
}

// fillCreate sets what the core decides of an import's image-create: its
// name, datastore and owner, the attributes that trace it to the app and
// the import, and the app's description when the driver gave none.
func (s *Service) fillCreate(c *schemas.ImageCreate, m *bus.Msg, mk Market, app App, req AppImport) {
	c.Name, c.Datastore, c.OnBehalfOf = req.Name, req.Datastore, bus.UserOf(m)
	if c.Type == "" {
		c.Type = schemas.ImageTypeOS
	}
	if c.Description == "" {
		c.Description = app.Description
	}
	if len(c.Description) > maxImageDescription {
		c.Description = c.Description[:maxImageDescription]
	}
	if c.Attributes == nil {
		c.Attributes = map[string]string{}
	}
	c.Attributes["MARKETPLACE"] = mk.Name
	c.Attributes["MARKETPLACE_ID"] = idToken(mk.ID)
	c.Attributes["MARKETPLACE_APP"] = app.Name
	c.Attributes["MARKETPLACE_APP_ID"] = idToken(app.ID)
	c.Attributes[AttrImport] = m.Envelope.ID
}

// vmTemplate is the VM template of an import of app as name: the driver's
// when it brings its own (Templater), else the core's.
func (s *Service) vmTemplate(mk Market, app App, name string, disk Disk) (string, error) {
	if t, ok := s.cfg.Drivers[mk.Mad].(Templater); ok {
		return t.VMTemplate(mk, app, name, disk)
	}
	return VMTemplate(name, s.cfg.User, s.cfg.Kernel, disk, app), nil
}

// importedApp finds the marketplace and the app an import names. Importing
// is using the marketplace: a sender who may not is refused (forbidden)
// before its apps are looked at.
func (s *Service) importedApp(ctx context.Context, m *bus.Msg, req AppImport) (Market, App, error) {
	mk, _, err := s.UsableMarket(ctx, m, req.MarketID)
	if err != nil {
		return mk, App{}, err
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
func (s *Service) importImage(ctx context.Context, m *bus.Msg, create schemas.ImageCreate) (int64, error) {
	key := ImportAnswerKey(m.Envelope.ID)
	if e, err := s.dedup.Get(ctx, key); err == nil {
		return strconv.ParseInt(string(e.Value()), 10, 64)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, err
	}
	id, found, err := s.importedBefore(ctx, m, create.Name)
	if err != nil {
		return 0, err
	}
	if !found {
		if id, err = s.createImage(ctx, m, create); err != nil {
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
func (s *Service) createImage(ctx context.Context, m *bus.Msg, create schemas.ImageCreate) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, CatalogCallTimeout)
	defer cancel()
	ans, err := s.bus.Call(cctx, schemas.ServiceCatalog, schemas.CommandCatalogImageCreate, create, []string{schemas.EventCatalogImageCreated},
		CausedBy(m.Envelope, schemas.CommandCatalogImageCreate)...)
	var ce *bus.CallError
	if errors.As(err, &ce) {
		// The catalog's code (a taken name: conflict) is the refusal's.
		return 0, &refusal{bus.WithCode(ce.Code, fmt.Errorf("the catalog refused image %q: %s", create.Name, ce.Message))}
	}
	if err != nil {
		return 0, err
	}
	var img schemas.Image
	if err := json.Unmarshal(ans.Data, &img); err != nil {
		return 0, fmt.Errorf("the catalog's %s for %q: %w", schemas.EventCatalogImageCreated, create.Name, err)
	}
	return img.ID, nil
}
