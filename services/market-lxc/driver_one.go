package marketlxc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/indexfile"
	"github.com/slipway/slipway/services/market-lxc/oneapp"
)

// oneDriver lists OpenNebula's public marketplace (MAD one). An IMAGE
// appliance of one file imports that file through the converter, from
// its download URL (a redirect the converter follows through the guard),
// with every checksum the appliance gives enforced, and brings its VM
// template (a Templater). A VMTEMPLATE appliance imports the IMAGE apps
// its disks name (a market.Composer) under its template. A
// SERVICE_TEMPLATE appliance imports each role's VMTEMPLATE app as
// <name>-<role> (a market.Assembler): Slipway has no service object, so the
// roles' templates are the service.
type oneDriver struct{ s *Service }

func (d oneDriver) Validate(mk *market.Market) error {
	if mk.Endpoint == "" {
		mk.Endpoint = DefaultOneEndpoint
	}
	if mk.Variant != "" || mk.Ftype != "" || len(mk.Arches) > 0 {
		return errors.New("a one marketplace lists every appliance: it has no variant, FTYPE or architectures")
	}
	_, err := indexfile.Base(mk.Endpoint)
	return err
}

func (d oneDriver) List(ctx context.Context, mk market.Market) ([]market.App, error) {
	l, err := oneapp.Fetch(ctx, d.s.client, mk.Endpoint, oneapp.Options{})
	if err != nil {
		return nil, err
	}
	var skip skipped
	for _, s := range l.Skipped {
		skip.add(s.Name+" ("+s.ID+")", s.Reason)
	}
	base, err := indexfile.Base(mk.Endpoint)
	if err != nil {
		return nil, err
	}
	apps := make([]market.App, 0, len(l.Entries))
	seen := map[string]bool{}
	for _, e := range l.Entries {
		app, err := oneApp(base, e)
		if err == nil && seen[app.Name] {
			err = errors.New("another appliance has the same name")
		}
		if err != nil {
			skip.add(e.Name+" ("+e.ID+")", err.Error())
			continue
		}
		seen[app.Name] = true
		apps = append(apps, app)
	}
	return skip.done(d.s, mk, oneapp.ListPath, apps)
}

// oneApp is the app of an appliance: OpenNebula's attributes, its VM
// template, and for an IMAGE its one file — the download URL with every
// checksum, the image's type, dev prefix and driver.
func oneApp(base *url.URL, e oneapp.Entry) (market.App, error) {
	tmpl, err := applianceTemplate(e.Template)
	if err != nil {
		return market.App{}, fmt.Errorf("opennebula_template: %w", err)
	}
	page, err := indexfile.Resolve(base, oneapp.ListPath+"/"+e.ID)
	if err != nil {
		return market.App{}, err
	}
	app := market.App{Name: e.Name, Version: e.Version, Publisher: e.Publisher, Description: e.ShortDescription,
		Tags: imageTags(e.Tags), Format: e.Format, OS: e.OSID, Release: e.OSRelease, Arch: marketArch(e.OSArch),
		VMTemplate: tmpl, Kind: schemas.MarketAppKindDisk, Source: page}
	if app.Description == "" {
		app.Description = e.Description
	}
	switch e.Type {
	case oneapp.TypeVMTemplate:
		app.Type = schemas.MarketAppTypeVmtemplate
		app.VMTemplate, err = withDiskApps(tmpl, e.Disks)
		return app, err
	case oneapp.TypeServiceTemplate:
		app.Type = schemas.MarketAppTypeServiceTemplate
		app.VMTemplate, err = withRoles(tmpl, e.Roles)
		return app, err
	}
	if len(e.Files) != 1 {
		return app, fmt.Errorf("an IMAGE appliance with %d files: Slipway imports those of one file", len(e.Files))
	}
	f := e.Files[0]
	if len(f.Checksums) == 0 {
		return app, errors.New("its file has no checksum: Slipway imports nothing unverified")
	}
	app.Source, app.Checksums, app.Size = f.Download, f.Checksums, f.Size
	if f.Type == string(schemas.ImageTypeDatablock) {
		app.ImageType = schemas.ImageTypeDatablock
	}
	if devPrefix.MatchString(f.DevPrefix) {
		app.DevPrefix = f.DevPrefix
	}
	if diskDriver.MatchString(f.Driver) {
		app.Driver = f.Driver
	}
	return app, nil
}

// The values an appliance's file may give the image, as the schemas
// allow them (DevPrefix, MarketApp.driver); others are left out.
var (
	devPrefix  = regexp.MustCompile(`^[a-z]{1,8}$`)
	diskDriver = regexp.MustCompile(`^[a-z0-9]{1,16}$`)
	imageTag   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	archName   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)
)

// imageTags are the tags that are valid TAGS (ImageTag), at most 100.
func imageTags(tags []string) []string {
	var out []string
	for _, t := range tags {
		if imageTag.MatchString(t) && len(out) < 100 {
			out = append(out, t)
		}
	}
	return out
}

// marketArch is arch when it is a valid MarketArch, else "".
func marketArch(arch string) string {
	if archName.MatchString(arch) {
		return arch
	}
	return ""
}

// withDiskApps is a VMTEMPLATE appliance's template with its disks as
// OpenNebula writes them, DISK = [ APP = "<IMAGE app>" ]: what Parts reads.
func withDiskApps(tmpl string, apps []string) (string, error) {
	if len(apps) == 0 {
		return "", errors.New("a VMTEMPLATE appliance that names no disk app")
	}
	t, err := onetemplate.ParseString(tmpl)
	if err != nil {
		return "", err
	}
	for _, a := range apps {
		t.AddVector("DISK", map[string]string{"APP": a})
	}
	return t.String(), nil
}

// roleName is what a service's role may be called: it names a VM
// template and images (<name>-<role>).
var roleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// withRoles is a SERVICE_TEMPLATE appliance's template with its roles,
// ROLE = [ NAME = "<role>", APP = "<VMTEMPLATE app>" ] in the order of
// their names: what Roles reads.
func withRoles(tmpl string, roles map[string]string) (string, error) {
	if len(roles) == 0 {
		return "", errors.New("a SERVICE_TEMPLATE appliance that names no role")
	}
	t, err := onetemplate.ParseString(tmpl)
	if err != nil {
		return "", err
	}
	t.Del("ROLE")
	names := make([]string, 0, len(roles))
	for r := range roles {
		if !roleName.MatchString(r) {
			return "", fmt.Errorf("role %q: want letters, digits, '_', '.' or '-', at most 64", indexfile.Short(r))
		}
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		t.AddVector("ROLE", map[string]string{"NAME": r, "APP": roles[r]})
	}
	return t.String(), nil
}

// Roles are a SERVICE_TEMPLATE appliance's roles and the VMTEMPLATE apps
// they instantiate (market.Assembler): an import imports each of those.
func (d oneDriver) Roles(app market.App) ([]market.Role, error) {
	if app.Type != schemas.MarketAppTypeServiceTemplate {
		return nil, nil
	}
	t, err := onetemplate.ParseString(app.VMTemplate)
	if err != nil {
		return nil, err
	}
	var roles []market.Role
	for _, v := range t.Vectors("ROLE") {
		if !roleName.MatchString(v["NAME"]) || v["APP"] == "" {
			return nil, fmt.Errorf("app %s: a ROLE without a valid NAME and an APP", app.Name)
		}
		roles = append(roles, market.Role{Name: v["NAME"], App: v["APP"]})
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("app %s: a SERVICE_TEMPLATE appliance that names no role", app.Name)
	}
	return roles, nil
}

// Parts are the IMAGE apps a VMTEMPLATE appliance's disks name (market
// Composer): an import imports each, and the template names their images.
func (d oneDriver) Parts(app market.App) ([]string, error) {
	if app.Type != schemas.MarketAppTypeVmtemplate {
		return nil, nil
	}
	t, err := onetemplate.ParseString(app.VMTemplate)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, v := range t.Vectors("DISK") {
		if v["APP"] == "" {
			return nil, fmt.Errorf("app %s: a DISK without APP", app.Name)
		}
		names = append(names, v["APP"])
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("app %s: a VMTEMPLATE appliance whose template names no disk app", app.Name)
	}
	return names, nil
}

func (d oneDriver) ImageCreate(_ market.Market, app market.App, req market.AppImport) (schemas.ImageCreate, error) {
	if app.Type != "" && app.Type != schemas.MarketAppTypeImage {
		return schemas.ImageCreate{}, fmt.Errorf("app %s is a %s appliance: only IMAGE appliances are images (VMTEMPLATE and SERVICE_TEMPLATE ones import the IMAGE apps they name)", app.Name, app.Type)
	}
	src, err := verifiedSource(app)
	if err != nil {
		return schemas.ImageCreate{}, err
	}
	c := schemas.ImageCreate{Type: app.ImageType, Path: src, Checksums: app.Checksums, DevPrefix: app.DevPrefix, Format: req.Format}
	if app.Driver != "" {
		c.Attributes = map[string]string{"DRIVER": app.Driver}
	}
	return c, nil
}

// VMTemplate is the appliance's own VM template (CPU, MEMORY, CONTEXT,
// GRAPHICS…) named name, whose DISKs are disks: the imported image, or
// those of a VMTEMPLATE appliance's disk apps in order. The appliance's
// own DISK and NAME are replaced.
func (d oneDriver) VMTemplate(_ market.Market, app market.App, name string, disks []market.Disk) (string, error) {
	t, err := onetemplate.ParseString(app.VMTemplate)
	if err != nil {
		return "", err
	}
	t.Del("NAME")
	t.Del("DISK")
	t.Attrs = append([]onetemplate.Attr{{Name: "NAME", Value: name}}, t.Attrs...)
	for _, disk := range disks {
		t.AddVector("DISK", disk.Vector())
	}
	return t.String(), nil
}

// attrName is a template attribute name; keys of an appliance's template
// that are not are left out.
var attrName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// applianceTemplate writes an appliance's opennebula_template (decoded
// JSON) in OpenNebula's syntax: strings and numbers as single values,
// objects of them as vectors, lists of objects as repeated vectors. Its
// DISK and NAME are left to VMTemplate; what the syntax cannot hold
// (other names, deeper values) is left out. onetemplate quotes every
// value, so the index's text never becomes syntax.
func applianceTemplate(doc map[string]any) (string, error) {
	t := &onetemplate.Template{}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !attrName.MatchString(k) || k == "DISK" || k == "NAME" {
			continue
		}
		addTemplateValue(t, k, doc[k])
	}
	text := t.String()
	// What was written must read back as the same template.
	if _, err := onetemplate.ParseString(text); err != nil {
		return "", err
	}
	return text, nil
}

func addTemplateValue(t *onetemplate.Template, name string, v any) {
	if s, ok := scalar(v); ok {
		t.Add(name, s)
		return
	}
	switch v := v.(type) {
	case map[string]any:
		if vec := vector(v); len(vec) > 0 {
			t.AddVector(name, vec)
		}
	case []any:
		for _, e := range v {
			if m, ok := e.(map[string]any); ok {
				if vec := vector(m); len(vec) > 0 {
					t.AddVector(name, vec)
				}
			}
		}
	}
}

// vector is the scalar members of m under valid names.
func vector(m map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if s, ok := scalar(v); ok && attrName.MatchString(k) {
			out[k] = s
		}
	}
	return out
}

func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		if v {
			return "YES", true
		}
		return "NO", true
	}
	return "", false
}
