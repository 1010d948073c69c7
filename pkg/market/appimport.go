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
// sends the launcher a VM template whose disk is that image (an app made
// of parts, Composer: one image per part, the template naming them all;
// app-imported names the first), keeps the
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
	parts, err := s.parts(ctx, d, mk, app, req.Name)
	if err != nil {
		return err
	}
	// Every part's image-create is checked before the first is sent.
	creates := make([]schemas.ImageCreate, len(parts))
	for i, p := range parts {
		if creates[i], err = d.ImageCreate(mk, p.app, Effective(mk, req)); err != nil {
			return &refusal{fmt.Errorf("import %s of %s: %w", p.app.Name, mk.Name, err)}
		}
		s.fillCreate(&creates[i], m, mk, p.app, req)
		creates[i].Name = p.image
	}
	disks := make([]Disk, len(parts))
	for i, p := range parts {
		if disks[i].ID, err = s.importImage(ctx, m, p.key, creates[i]); err != nil {
			return err
		}
	}
	tmpl, err := s.vmTemplate(mk, app, req.Name, disks)
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
	ev := schemas.MarketAppImported{MarketID: mk.ID, App: app.Name, Name: req.Name, URL: creates[0].Path, ImageID: disks[0].ID, Template: tmpl}
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
	c.Attributes[schemas.AttrMarketplace] = mk.Name
	c.Attributes["MARKETPLACE_ID"] = idToken(mk.ID)
	c.Attributes[schemas.AttrMarketplaceApp] = app.Name
	c.Attributes["MARKETPLACE_APP_ID"] = idToken(app.ID)
	c.Attributes[AttrImport] = m.Envelope.ID
}

// part is one image an import creates: of which app, its name, and the
// key its answer is remembered under.
type part struct {
	app   App
	image string
	key   string
}

// parts are the images an import of app as name creates: the app itself,
// or each of its parts (Composer), looked up in the same marketplace.
func (s *Service) parts(ctx context.Context, d Driver, mk Market, app App, name string) ([]part, error) {
	c, ok := d.(Composer)
	if !ok {
		return []part{{app: app, image: name, key: ""}}, nil
	}
	names, err := c.Parts(app)
	if err != nil {
		return nil, &refusal{fmt.Errorf("import %s of %s: %w", app.Name, mk.Name, err)}
	}
	if len(names) == 0 {
		return []part{{app: app, image: name, key: ""}}, nil
	}
	out := make([]part, len(names))
	for i, n := range names {
		p, err := s.store.app(ctx, mk.ID, n)
		if errors.Is(err, ErrNotFound) {
			return nil, missing("app %s of marketplace %d (%s) is made of app %q, which it does not list", app.Name, mk.ID, mk.Name, n)
		}
		if err != nil {
			return nil, err
		}
		out[i] = part{app: p, image: partName(name, i), key: "." + strconv.Itoa(i)}
	}
	return out, nil
}

// partName is the name of the image of an import's part i.
func partName(name string, i int) string { return name + "-" + strconv.Itoa(i) }

// vmTemplate is the VM template of an import of app as name: the driver's
// when it brings its own (Templater), else the core's.
func (s *Service) vmTemplate(mk Market, app App, name string, disks []Disk) (string, error) {
	if t, ok := s.cfg.Drivers[mk.Mad].(Templater); ok {
		return t.VMTemplate(mk, app, name, disks)
	}
	return VMTemplate(name, s.cfg.User, s.cfg.Kernel, disks[0], app), nil
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
// suffix tells the images of one import apart ("" for the only one).
func (s *Service) importImage(ctx context.Context, m *bus.Msg, suffix string, create schemas.ImageCreate) (int64, error) {
	key := ImportAnswerKey(m.Envelope.ID) + suffix
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
