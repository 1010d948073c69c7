package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// The OVA import: unpack (the converter streams the OVA, reads its OVF
// descriptor, verifies its manifest, checks each disk's header and stages
// each disk under ova/<saga>/ in the upload bucket) → convert (the first
// disk, as any import: the converter inspects, bounds and converts it) →
// commit. When the unpack reports, the catalog also asks itself, for the
// owner, an image-create of each further disk (<name>-disk<N>, an ordinary
// staged import with its own saga, quotas and state) and the launcher a VM
// template <name> naming every disk, with the descriptor's CPU, MEMORY and
// OS. The first image shows at once how many disks the OVA has
// (OVA_DISKS, so a client can follow every image), and later how the
// launcher answered the template: its ID (OVA_TEMPLATE) or why it was
// refused (OVA_TEMPLATE_ERROR, e.g. a taken name). A refused template
// fails no image: the disks are imported all the same, and the template
// can be made by hand.
//
// The catalog orchestrates because it owns what must stay consistent: the
// image IDs and names, the quotas, the staged objects and their deletion
// on failure. The converter only reads bytes; an OVA's disks reach S3 only
// through the import every upload takes.
const (
	KindOVAImport = "ova-import"
	PhaseUnpack   = saga.Phase("unpack")
)

var evtOvaUnpacked = eventKey(schemas.ServiceConverter, schemas.EventConverterOvaUnpacked)

// Attributes an OVA import sets on its images.
const (
	AttrOVA       = "OVA"         // the first disk's image ID, on every disk's image
	AttrOVFName   = "OVF_NAME"    // the descriptor's virtual system name
	AttrOVFOSType = "OVF_OS_TYPE" // its osType
	AttrOVFOSID   = "OVF_OS_ID"   // its OperatingSystemSection ovf:id
	AttrOVADisks  = "OVA_DISKS"   // how many disks (so images) the OVA has
	// On the first disk's image: the launcher's answer to the template.
	AttrOVATemplate      = "OVA_TEMPLATE"       // the VM template's ID
	AttrOVATemplateError = "OVA_TEMPLATE_ERROR" // why the launcher refused it
)

// stepOVATemplate is the saga step of the template-create: the launcher's
// answer is caused by it.
const stepOVATemplate = "ova-template"

// The launcher's answers to an OVA's template-create.
var (
	evtTemplateCreated = eventKey(schemas.ServiceLauncher, schemas.EventLauncherTemplateCreated)
	evtLauncherFailed  = eventKey(schemas.ServiceLauncher, schemas.EventLauncherFailed)
)

// ovaFlow declares the OVA import.
func (s *Service) ovaFlow() *flow {
	return &flow{
		kind: KindOVAImport, what: "import", reporter: "the converter", fail: s.failImportCode,
		phases: []phase{s.unpackPhase(), s.convertPhase(), s.commitPhase("import")},
		// Staged disks reported for no running OVA import have no owner.
		// The launcher's answers name a template or nothing, not the
		// image: the saga is found by their correlation.
		unclaimed: map[string]eventHandler{evtOvaUnpacked: unclaimedReport(s.orphanUnpacked),
			evtTemplateCreated: s.ovaTemplateAnswered, evtLauncherFailed: s.ovaTemplateAnswered},
	}
}

func (s *Service) unpackPhase() phase {
	return phase{
		name:     PhaseUnpack,
		commands: []string{"converter.ova-unpack"},
		on:       map[string]eventHandler{evtOvaUnpacked: s.ovaUnpacked, evtConvertFailed: s.convertFailed},
		deadline: s.cfg.ConvertDeadline, compensate: s.compensateUnpack,
	}
}

// ovaData is an OVA import's saga state: the import's (Staged is the
// first staged disk once unpacked), the OVA upload it consumes (Upload),
// what applies to every disk, and the converter's report.
type ovaData struct {
	importData
	Source      string                        `json:"source"`
	Upload      string                        `json:"upload,omitempty"` // the staged OVA, deleted once unpacked
	Origin      string                        `json:"origin,omitempty"` // what the user named (the CLI's local file)
	Checksums   []string                      `json:"checksums,omitempty"`
	Staging     string                        `json:"staging"`
	Datastore   string                        `json:"datastore"`
	Owner       string                        `json:"owner"`
	Name        string                        `json:"name"`
	Format      schemas.DiskFormat            `json:"format,omitempty"`
	Compression schemas.Compression           `json:"compression,omitempty"`
	Persistent  bool                          `json:"persistent,omitempty"`
	Unpacked    *schemas.ConverterOvaUnpacked `json:"unpacked,omitempty"`
}

// ovaUnpacked hands the staged disks over: the first to this saga's
// import, the others to image-creates the catalog sends itself, and has
// the launcher make the VM template. A report about a saga that is over
// deletes what it staged.
func (s *Service) ovaUnpacked(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	ev, d, err := decodeStep[schemas.ConverterOvaUnpacked, ovaData](m, sg)
	if err != nil {
		return err
	}
	switch {
	case sg.Status != saga.StatusRunning:
		if sg.Status != saga.StatusSucceeded {
			return s.deleteStagedDisks(ctx, d.Staging, ev)
		}
		return nil
	case sg.Phase != PhaseUnpack:
		return nil // a duplicate
	}
	if reason := checkStagedDisks(d.Staging, ev); reason != "" {
		_ = s.deleteStagedDisks(ctx, d.Staging, ev)
		return s.failImport(ctx, sg, reason, &m.Envelope)
	}
	if reason := s.takenDiskName(ctx, d, len(ev.Disks)); reason != "" {
		_ = s.deleteStagedDisks(ctx, d.Staging, ev)
		return s.failImportCode(ctx, sg, schemas.CodeConflict, reason, &m.Envelope)
	}
	sg, err = updateData(ctx, s.sagas, sg.ID, PhaseUnpack, func(_ *saga.Saga, d *ovaData) {
		d.Unpacked, d.Staged = &ev, ev.Disks[0].Staged
		d.SetAttributes = ovaAttributes(ev, d.ImageID)
	})
	if errors.Is(err, saga.ErrNoChange) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := sg.Decode(&d); err != nil {
		return err
	}
	// Shown now, not at commit: a client follows every disk's image even
	// if this one fails.
	if err := s.setAttributes(ctx, m, d.ImageID, d.SetAttributes); err != nil {
		return err
	}
	// The OVA upload is consumed: everything it held is staged. (A
	// redelivery runs every step again: each is idempotent.)
	if err := s.deleteURL(ctx, d.Upload); err != nil {
		return err
	}
	if err := s.createOVADisks(ctx, m, sg.ID, d); err != nil {
		return err
	}
	if err := s.createOVATemplate(ctx, m, sg.ID, d); err != nil {
		return err
	}
	sg, err = s.advance(ctx, sg, PhaseUnpack, PhaseConvert, "unpacked")
	if errors.Is(err, saga.ErrWrongPhase) {
		return nil
	}
	if err != nil {
		return err
	}
	cmd := schemas.ConverterImport{ImageID: d.ImageID, Source: d.Staged, Format: d.Format, Compression: d.Compression,
		Dest: d.Dest, MaxVirtualSize: d.maxVirtualSize(s.cfg.MaxVirtualSize)}
	return s.send(ctx, m.Envelope, sg.ID, PhaseConvert, d.ImageID, schemas.ServiceConverter, schemas.CommandConverterImport, cmd)
}

// takenDiskName says which name of the further disks' images the owner
// already has ("" when none): the template names them by name, so an
// existing image would stand in for a disk. (A race with another create
// of that name ends in that create's refusal; createOrDrop deletes the
// disk it would have consumed.)
func (s *Service) takenDiskName(ctx context.Context, d ovaData, disks int) string {
	for n := 1; n < disks; n++ {
		name := ovaDiskName(d.Name, n)
		if held, err := s.images.lookupName(ctx, d.Owner, name); err == nil {
			return fmt.Sprintf("the OVA has %d disks, and disk %d becomes image %q, but user %s already has an image of that name (ID %d): rename or delete it, or import under another name",
				disks, n, name, d.Owner, held.ID)
		}
	}
	return ""
}

// checkStagedDisks says why a report's disks are not where this saga's
// converter was told to stage them ("" when they are).
func checkStagedDisks(staging string, ev schemas.ConverterOvaUnpacked) string {
	if len(ev.Disks) == 0 {
		return "the converter reported an OVA without disks"
	}
	for i, d := range ev.Disks {
		if d.Staged != blob.OVADisk(staging, i) {
			return fmt.Sprintf("the converter staged disk %d at %s instead of %s", i, d.Staged, blob.OVADisk(staging, i))
		}
	}
	return ""
}

// deleteStagedDisks deletes the staged disks of a report, only under the
// saga's staging prefix.
func (s *Service) deleteStagedDisks(ctx context.Context, staging string, ev schemas.ConverterOvaUnpacked) error {
	var errs []error
	for _, d := range ev.Disks {
		if staging != "" && strings.HasPrefix(d.Staged, staging) {
			errs = append(errs, s.deleteURL(ctx, d.Staged))
		}
	}
	return errors.Join(errs...)
}

// orphanUnpacked handles an unpack report no saga claims: its staged disks
// have no owner. Their prefix is the one derived from the correlation.
func (s *Service) orphanUnpacked(ctx context.Context, ev schemas.ConverterOvaUnpacked) error {
	for _, d := range ev.Disks {
		bucket, key, err := blob.ParseURL(d.Staged)
		if err != nil || bucket != s.locations().UploadBucket || !strings.HasPrefix(key, blob.OVAPrefix) {
			continue
		}
		s.log.Warn("converter reported a staged OVA disk for no running import; deleting it", "image", ev.ImageID, "staged", d.Staged)
		if err := s.deleteURL(ctx, d.Staged); err != nil {
			return err
		}
	}
	return nil
}

// compensateUnpack deletes the OVA upload the import consumed (not one a
// refused create never handed over: dropUpload) and, while
// no disk was handed over (after that, each import owns its disk),
// whatever is staged under the saga's prefix.
func (s *Service) compensateUnpack(ctx context.Context, sg *saga.Saga) error {
	var d ovaData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	if err := s.dropUpload(ctx, d.ImageID, sg.ID, d.Upload); err != nil {
		return err
	}
	if d.Unpacked != nil {
		return nil
	}
	bucket, prefix, err := blob.ParseURL(d.Staging)
	if err != nil {
		return nil
	}
	return s.blobs.DeletePrefix(ctx, bucket, prefix)
}

// ovaAttributes are the attributes of an OVA's images: where they come
// from and what the descriptor says of the system.
func ovaAttributes(ev schemas.ConverterOvaUnpacked, first int64) map[string]string {
	a := map[string]string{AttrOVA: idToken(first), AttrOVADisks: strconv.Itoa(len(ev.Disks))}
	if ev.Name != "" {
		a[AttrOVFName] = ev.Name
	}
	if ev.OSType != "" {
		a[AttrOVFOSType] = ev.OSType
	}
	if ev.OSID > 0 {
		a[AttrOVFOSID] = strconv.FormatInt(ev.OSID, 10)
	}
	return a
}

// ovaDiskName is the image name of an OVA's disk n (from 1; disk 0 is
// the image the OVA was imported as).
func ovaDiskName(name string, n int) string { return name + "-disk" + strconv.Itoa(n) }

// createOVADisks sends the image-create of each disk after the first, for
// the owner, as staged imports of the catalog's own staging. Each is a
// saga step: a resend is a duplicate JetStream drops.
func (s *Service) createOVADisks(ctx context.Context, m *bus.Msg, sagaID string, d ovaData) error {
	for n, disk := range d.Unpacked.Disks[1:] {
		n++
		req := schemas.ImageCreate{
			Name: ovaDiskName(d.Name, n), Type: schemas.ImageTypeDatablock, Datastore: d.Datastore,
			Path: disk.Staged, Staged: true, Origin: ovaOrigin(d.Origin, n), Format: d.Format, Compression: d.Compression,
			Persistent: d.Persistent, Attributes: ovaAttributes(*d.Unpacked, d.ImageID), OnBehalfOf: d.Owner,
		}
		if _, err := s.bus.Command(ctx, ServiceName, schemas.CommandCatalogImageCreate, req,
			bus.CausedBy(m.Envelope), bus.WithStep(sagaID, "ova-disk"+strconv.Itoa(n))); err != nil {
			return fmt.Errorf("image %d: create the image of OVA disk %d: %w", d.ImageID, n, err)
		}
	}
	return nil
}

// ovaOrigin is what an OVA disk's image shows as its PATH.
func ovaOrigin(source string, n int) string {
	o := source + "#disk" + strconv.Itoa(n)
	if len(o) > 1024 {
		return o[len(o)-1024:]
	}
	return o
}

// createOVATemplate asks the launcher for the VM template of an OVA: its
// name, the descriptor's CPUs, memory and OS, and every disk (the first
// by ID, the others by name and owner: the launcher resolves them when a
// VM is instantiated, as for a marketplace app's template).
func (s *Service) createOVATemplate(ctx context.Context, m *bus.Msg, sagaID string, d ovaData) error {
	tmpl := ovaTemplate(d)
	_, err := s.bus.Command(ctx, schemas.ServiceLauncher, schemas.CommandLauncherTemplateCreate,
		schemas.LauncherTemplateCreate{Name: d.Name, Template: tmpl, OnBehalfOf: d.Owner},
		bus.CausedBy(m.Envelope), bus.WithStep(sagaID, stepOVATemplate))
	if err != nil {
		return fmt.Errorf("image %d: create the OVA's VM template: %w", d.ImageID, err)
	}
	return nil
}

// ovaTemplateAnswered records on an OVA's first image the launcher's
// answer to its template-create: the template's ID, or why it was
// refused. Any other template-created or launcher failure is not ours.
func (s *Service) ovaTemplateAnswered(ctx context.Context, m *bus.Msg, _ *saga.Saga) error {
	if m.Envelope.CorrelationID == "" {
		return nil
	}
	sg, err := s.sagas.Get(ctx, m.Envelope.CorrelationID)
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return nil
	case err != nil:
		return err
	case sg.Kind != KindOVAImport || m.Envelope.CausationID != envelope.StepID(sg.ID, stepOVATemplate):
		return nil
	}
	var d ovaData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	answer, err := templateAnswer(m, d.Name)
	if err != nil {
		return bus.Terminal(err)
	}
	if msg := answer[AttrOVATemplateError]; msg != "" {
		s.log.Warn("the launcher refused an OVA's VM template; the images are imported without it", "image", d.ImageID, "template", d.Name, "err", msg)
	}
	err = s.setAttributes(ctx, m, d.ImageID, answer)
	if errors.Is(err, ErrNotFound) {
		return nil // the image was deleted meanwhile
	}
	return err
}

// templateAnswer is the attribute that records the launcher's answer m
// to the template-create of template name.
func templateAnswer(m *bus.Msg, name string) (map[string]string, error) {
	if m.Name == schemas.EventLauncherTemplateCreated {
		var t schemas.VMTemplate
		if err := m.Decode(&t); err != nil {
			return nil, err
		}
		return map[string]string{AttrOVATemplate: idToken(t.ID)}, nil
	}
	var f schemas.Failure
	if err := m.Decode(&f); err != nil {
		return nil, err
	}
	why := fmt.Sprintf("the launcher refused the VM template %q: %s; the images are imported, and a template naming them can be created by hand (slipway template create)", name, f.Error)
	return map[string]string{AttrOVATemplateError: schemas.ErrorText(why)}, nil
}

// ovaTemplate is the VM template text of an OVA import. Every value is
// quoted by onetemplate; the descriptor's texts reach it only as values.
func ovaTemplate(d ovaData) string {
	ev := d.Unpacked
	t := &onetemplate.Template{}
	t.Add("NAME", d.Name)
	desc := "Imported from an OVA"
	if ev.Name != "" {
		desc += ": " + ev.Name
	}
	if ev.OSDescription != "" {
		desc += " (" + ev.OSDescription + ")"
	}
	t.Add("DESCRIPTION", desc)
	if ev.Cpus > 0 {
		t.Add("CPU", strconv.FormatInt(ev.Cpus, 10))
		t.Add("VCPU", strconv.FormatInt(ev.Cpus, 10))
	} else {
		t.Add("CPU", market.DefaultCPU)
	}
	if ev.MemoryMiB > 0 {
		t.Add("MEMORY", strconv.FormatInt(ev.MemoryMiB, 10))
	} else {
		t.Add("MEMORY", market.DefaultMemoryMiB)
	}
	for n := range ev.Disks {
		disk := market.Disk{ID: d.ImageID}
		if n > 0 {
			disk = market.Disk{ID: -1, Name: ovaDiskName(d.Name, n), User: d.Owner}
		}
		t.AddVector("DISK", disk.Vector())
	}
	if ev.OSType != "" {
		t.Add("GUEST_OS", ev.OSType)
	}
	if ev.OSID > 0 {
		t.Add(AttrOVFOSID, strconv.FormatInt(ev.OSID, 10))
	}
	t.AddVector("GRAPHICS", map[string]string{"LISTEN": "0.0.0.0", "TYPE": "VNC"})
	return t.String()
}

// setAttributes merges attrs into image id's attributes, whatever its
// state, and says so with image-updated (nothing when they are there
// already: a redelivery).
func (s *Service) setAttributes(ctx context.Context, m *bus.Msg, id int64, attrs map[string]string) error {
	img, changed, err := s.images.Update(ctx, id, func(img *schemas.Image) error {
		next := maps.Clone(img.Attributes)
		if next == nil {
			next = map[string]string{}
		}
		maps.Copy(next, attrs)
		if maps.Equal(next, img.Attributes) {
			return errNoChange
		}
		img.Attributes = next
		return nil
	})
	if err != nil || !changed {
		return err
	}
	return s.emitImage(ctx, schemas.EventCatalogImageUpdated, img, causedBy(m.Envelope, "attributes/"+schemas.EventCatalogImageUpdated))
}
