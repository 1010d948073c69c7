package market

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
// template for app-show and reports app-imported. An app made of parts
// (Composer) gets one image per part and one template naming them all; a
// service (Assembler) gets that for each of its roles. The catalog's
// refusal (a taken name, an unknown datastore) refuses the import with the
// catalog's message. It does not wait for the images to be built: the
// catalog's events say how that fares.
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
	units, err := s.units(ctx, d, mk, app, req.Name)
	if err != nil {
		return err
	}
	if err := s.prepare(ctx, m, d, mk, req, units); err != nil {
		return err
	}
	if err := s.importImages(ctx, m, units); err != nil {
		return err
	}
	ev := schemas.MarketAppImported{MarketID: mk.ID, App: app.Name, Name: req.Name, URL: units[0].parts[0].create.Path,
		ImageID: units[0].parts[0].id}
	texts := make([]string, len(units))
	for i, u := range units {
		if texts[i], err = s.vmTemplate(mk, u.app, u.name, u.disks()); err != nil {
			return &refusal{fmt.Errorf("the VM template of %s: %w (created: %s)", u.app.Name, err, createdImages(units))}
		}
	}
	for i, u := range units {
		if _, err := s.bus.Command(ctx, schemas.ServiceLauncher, schemas.CommandLauncherTemplateCreate,
			schemas.LauncherTemplateCreate{Name: u.name, Template: texts[i], OnBehalfOf: bus.UserOf(m)},
			CausedBy(m.Envelope, schemas.CommandLauncherTemplateCreate+templateSuffix(i))...); err != nil {
			return err
		}
		ids := u.ids()
		ev.ImageIds = append(ev.ImageIds, ids...)
		if u.role != "" {
			ev.Roles = append(ev.Roles, schemas.MarketAppImportedRole{Role: u.role, App: u.app.Name, Name: u.name, Template: texts[i], ImageIds: ids})
		}
	}
	ev.Template = texts[0]
	if err := s.store.putTemplate(ctx, mk.ID, app.Name, strings.Join(texts, "\n")); err != nil {
		return err
	}
	_, err = s.bus.Event(ctx, EventAppImported, idToken(mk.ID), ev, CausedBy(m.Envelope, EventAppImported)...)
	return err
}

// templateSuffix tells the template-create commands of one import apart
// (see createImage): "" for the first, ".1" for the second...
func templateSuffix(i int) string {
	if i == 0 {
		return ""
	}
	return "." + strconv.Itoa(i)
}

// prepare fills in every image-create of the import before the first is
// sent: the driver's refusal of any part refuses the whole import with
// nothing created. So does an image name already taken, checked here
// because the catalog's own refusal of a later part would come after the
// earlier parts' images were created.
func (s *Service) prepare(ctx context.Context, m *bus.Msg, d Driver, mk Market, req AppImport, units []unit) error {
	var err error
	for _, u := range units {
		for i := range u.parts {
			p := &u.parts[i]
			if p.create, err = d.ImageCreate(mk, p.app, Effective(mk, req)); err != nil {
				return &refusal{fmt.Errorf("import %s of %s: %w", p.app.Name, mk.Name, err)}
			}
			s.fillCreate(&p.create, m, mk, p.app, req)
			p.create.Name = p.image
		}
	}
	if len(units) == 1 && len(units[0].parts) == 1 {
		return nil // the catalog's refusal comes before anything is created
	}
	for _, u := range units {
		for _, p := range u.parts {
			if err := s.nameFree(ctx, m, p.create.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// nameFree refuses an import one of whose image names is taken, unless by
// an image an earlier delivery of the same import created.
func (s *Service) nameFree(ctx context.Context, m *bus.Msg, name string) error {
	var img schemas.Image
	err := s.bus.Query(ctx, schemas.ServiceCatalog, schemas.QueryCatalogShow, map[string]string{"name": name}, &img)
	switch {
	case bus.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("look for image %q: %w", name, err)
	case img.Attributes[AttrImport] == m.Envelope.ID:
		return nil
	}
	return &refusal{bus.WithCode(schemas.CodeConflict, fmt.Errorf("an image named %q already exists (ID %d): the import creates images of that name; import under another --name", name, img.ID))}
}

// importImages has the catalog create every part's image, in order. A
// refusal after the first names the images created so far: they keep
// importing, and being LOCKED until then, cannot be deleted yet.
func (s *Service) importImages(ctx context.Context, m *bus.Msg, units []unit) error {
	for _, u := range units {
		for i := range u.parts {
			p := &u.parts[i]
			id, err := s.importImage(ctx, m, p.key, p.create)
			if err != nil {
				if created := createdImages(units); created != "" && isRefusal(err) {
					return &refusal{fmt.Errorf("%w (already created by this import, still importing: %s; delete them once READY or ERROR)", err, created)}
				}
				return err
			}
			p.id, p.done = id, true
		}
	}
	return nil
}

// createdImages lists the images an import created so far: "image 5
// (vm-0), image 6 (vm-1)", or "".
func createdImages(units []unit) string {
	var out []string
	for _, u := range units {
		for _, p := range u.parts {
			if p.done {
				out = append(out, fmt.Sprintf("image %d (%s)", p.id, p.create.Name))
			}
		}
	}
	return strings.Join(out, ", ")
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

// unit is one VM template an import sends: of which app, its name, its
// role in a service ("" for any other app), and the images its disks name.
type unit struct {
	app   App
	name  string
	role  string
	parts []part
}

// disks are the images u's template names, in order.
func (u unit) disks() []Disk {
	out := make([]Disk, len(u.parts))
	for i, p := range u.parts {
		out[i] = Disk{ID: p.id}
	}
	return out
}

// ids are the IDs of u's images, in order.
func (u unit) ids() []int64 {
	out := make([]int64, len(u.parts))
	for i, p := range u.parts {
		out[i] = p.id
	}
	return out
}

// part is one image an import creates: of which app, its name, the key
// its answer is remembered under, its image-create and, once created,
// its ID.
type part struct {
	app    App
	image  string
	key    string
	create schemas.ImageCreate
	id     int64
	done   bool
}

// units are the VM templates an import of app as name sends: the app's
// own, or one per role of a service (Assembler), each role's app looked up
// in the same marketplace and imported as <name>-<role>.
func (s *Service) units(ctx context.Context, d Driver, mk Market, app App, name string) ([]unit, error) {
	a, ok := d.(Assembler)
	if !ok {
		return s.unit(ctx, d, mk, app, name, "", "")
	}
	roles, err := a.Roles(app)
	if err != nil {
		return nil, &refusal{fmt.Errorf("import %s of %s: %w", app.Name, mk.Name, err)}
	}
	if len(roles) == 0 {
		return s.unit(ctx, d, mk, app, name, "", "")
	}
	var out []unit
	for i, r := range roles {
		ra, err := s.partApp(ctx, mk, app, r.App)
		if err != nil {
			return nil, err
		}
		u, err := s.unit(ctx, d, mk, ra, name+"-"+r.Name, r.Name, "."+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		out = append(out, u...)
	}
	return out, nil
}

// unit is the one VM template of app imported as name: its images are the
// app itself, or each of its parts (Composer), looked up in the same
// marketplace. keyPrefix tells the units of one import apart.
func (s *Service) unit(ctx context.Context, d Driver, mk Market, app App, name, role, keyPrefix string) ([]unit, error) {
	u := unit{app: app, name: name, role: role}
	c, ok := d.(Composer)
	var names []string
	if ok {
		var err error
		if names, err = c.Parts(app); err != nil {
			return nil, &refusal{fmt.Errorf("import %s of %s: %w", app.Name, mk.Name, err)}
		}
	}
	if len(names) == 0 {
		if role != "" {
			return nil, &refusal{fmt.Errorf("import of role %s: app %s names no disk app", role, app.Name)}
		}
		u.parts = []part{{app: app, image: name, key: keyPrefix}}
		return []unit{u}, nil
	}
	for i, n := range names {
		p, err := s.partApp(ctx, mk, app, n)
		if err != nil {
			return nil, err
		}
		u.parts = append(u.parts, part{app: p, image: partName(name, i), key: keyPrefix + "." + strconv.Itoa(i)})
	}
	return []unit{u}, nil
}

// partApp is app n of mk, which whole is made of.
func (s *Service) partApp(ctx context.Context, mk Market, whole App, n string) (App, error) {
	p, err := s.store.app(ctx, mk.ID, n)
	if errors.Is(err, ErrNotFound) {
		return p, missing("app %s of marketplace %d (%s) is made of app %q, which it does not list", whole.Name, mk.ID, mk.Name, n)
	}
	return p, err
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
		if id, err = s.createImage(ctx, m, suffix, create); err != nil {
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

// createImage asks the catalog for the image and waits for its ID. Each
// part's image-create has an ID of its own (JetStream and the catalog drop
// a command whose ID they have seen), the same on every delivery.
func (s *Service) createImage(ctx context.Context, m *bus.Msg, suffix string, create schemas.ImageCreate) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, CatalogCallTimeout)
	defer cancel()
	ans, err := s.bus.Call(cctx, schemas.ServiceCatalog, schemas.CommandCatalogImageCreate, create, []string{schemas.EventCatalogImageCreated},
		CausedBy(m.Envelope, schemas.CommandCatalogImageCreate+suffix)...)
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
