package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// The docker import workflow: resolve (market-dockerhub pins the URL to a
// manifest digest) → build → commit (READY, with the image's provenance).
// For a container filesystem the builder stores the final blob itself, in
// the image's format at its datastore destination: the filesystem is its
// own work from a confined tree, so there is no untrusted disk to inspect,
// and going through the converter would move the whole raw image twice
// more. A disk carried in an image is untrusted: the builder stages it in
// the upload bucket and a convert phase imports it like any upload
// (build → convert → commit).
const (
	KindDockerImport = "docker-import"
	PhaseResolve     = saga.Phase("resolve")
	PhaseBuild       = saga.Phase("build")
)

// Services the docker import talks to.
const (
	marketService  = "market-dockerhub"
	builderService = "builder"
)

// Provenance attributes a docker import records on its image.
const (
	AttrSourceReference = "SOURCE_REFERENCE"
	AttrSourceDigest    = "SOURCE_DIGEST"
	AttrDistro          = "DISTRO"
)

// dockerData is the docker import's saga state. It holds importData's
// fields, so the convert and commit phases are the import's own; Staged is
// where a carried disk is built, deleted once the converter has imported
// it (a container build goes straight to Dest).
type dockerData struct {
	importData
	URL         string              `json:"url"`
	Format      schemas.DiskFormat  `json:"format"`
	Compression schemas.Compression `json:"compression,omitempty"`
	SizeMiB     int64               `json:"size_mib,omitempty"`
	Filesystem  schemas.Filesystem  `json:"filesystem"`
	Distro      string              `json:"distro,omitempty"`
	Arch        string              `json:"arch,omitempty"`
	// Set by the resolve phase.
	Reference string              `json:"reference,omitempty"`
	Digest    string              `json:"digest,omitempty"`
	Platform  string              `json:"platform,omitempty"`
	Kind      schemas.ContentKind `json:"kind,omitempty"`
	// Built is the builder's report.
	Built *schemas.BuilderBuilt `json:"built,omitempty"`
}

// isImportKind tells the workflows that write a new image's data and end
// in the import's commit phase: imports and the LUKS sagas.
func isImportKind(kind string) bool {
	return kind == KindImport || kind == KindDockerImport || isLuksKind(kind)
}

func isDockerPath(p string) bool { return strings.HasPrefix(p, dockerurl.Scheme) }

func (s *Service) dockerDefinition() saga.Definition {
	return saga.Definition{Kind: KindDockerImport, Phases: map[saga.Phase]saga.PhaseSpec{
		PhaseResolve: {Deadline: s.cfg.ResolveDeadline},
		// Both delete everything the import may have written: the build
		// and the converted disk.
		PhaseBuild:   {Deadline: s.cfg.BuildDeadline, Compensate: s.compensateImport},
		PhaseConvert: {Deadline: s.cfg.ConvertDeadline, Compensate: s.compensateImport},
		PhaseCommit:  {Deadline: s.cfg.CommitDeadline},
	}}
}

// planDocker applies the rules of a docker:// path to an image-create
// whose URL parsed.
func planDocker(p *plan) error {
	req, u := p.req, p.docker
	switch {
	case req.Staged:
		return refuse("staged marks an uploaded object the catalog deletes: a docker:// path is not one")
	case req.SourceFormat != "" || req.Checksum != "":
		return refuse("source_format and checksum describe a disk to import: a docker:// image is pinned by its manifest digest instead (docker://repo@sha256:…)")
	case p.typ != schemas.ImageTypeOS && p.typ != schemas.ImageTypeDatablock:
		return refuse("a docker:// image becomes an OS or DATABLOCK disk, not %s", p.typ)
	}
	p.format = schemas.DiskFormat(u.Format)
	if req.Format != "" && req.Format != p.format {
		if explicitFormat(req.Path) {
			return refuse("format %s conflicts with format=%s in the docker URL", req.Format, u.Format)
		}
		p.format = req.Format
	}
	if p.format != schemas.DiskFormatRaw && p.format != schemas.DiskFormatQcow2 {
		return refuse("a docker:// image is stored as raw or qcow2, not %s", p.format)
	}
	if req.Compression != "" && p.format != schemas.DiskFormatQcow2 {
		return refuse("compression %s applies to qcow2 only, not to format %s", req.Compression, p.format)
	}
	return nil
}

// explicitFormat reports whether a docker URL names its format (Parse
// fills in the default, so the parsed URL cannot tell).
func explicitFormat(path string) bool {
	_, query, _ := strings.Cut(path, "?")
	q, err := url.ParseQuery(query)
	return err == nil && q.Has("format")
}

// buildURL is where the builder stages the disk an image carries: an
// upload object of this saga the import deletes once converted.
func (s *Service) buildURL(id int64, sagaID string) string {
	return blob.URL(s.cfg.UploadBucket, blob.BuildKey(id, sagaID))
}

// isBuildURL reports whether u lies where the builder stages image id's
// carried disks.
func (s *Service) isBuildURL(id int64, u string) bool {
	bucket, key, err := blob.ParseURL(u)
	return err == nil && bucket == s.cfg.UploadBucket && strings.HasPrefix(key, blob.BuildPrefix+idToken(id)+"/")
}

// startDockerSaga records a docker import in its resolve phase.
func (s *Service) startDockerSaga(ctx context.Context, id string, p plan, base importData) error {
	base.Staged = s.buildURL(base.ImageID, id)
	u := p.docker
	d := dockerData{importData: base, URL: p.req.Path, Format: p.format, Compression: p.req.Compression,
		SizeMiB: u.SizeMiB, Filesystem: schemas.Filesystem(u.Filesystem),
		Distro: strings.ToLower(u.Distro), Arch: u.Arch}
	sg := &saga.Saga{
		ID:       id,
		Kind:     KindDockerImport,
		Subject:  idToken(base.ImageID),
		Phase:    PhaseResolve,
		Deadline: time.Now().UTC().Add(s.cfg.ResolveDeadline),
		Owned:    []string{base.Staged, base.Dest},
	}
	if err := sg.SetData(d); err != nil {
		return err
	}
	return s.createSaga(ctx, sg)
}

// sendResolve asks market-dockerhub to pin the URL.
func (s *Service) sendResolve(ctx context.Context, m *bus.Msg, p plan, imageID int64, sagaID string) error {
	_, err := s.bus.Command(ctx, marketService, "resolve",
		schemas.MarketDockerhubResolve{ImageID: imageID, URL: p.req.Path},
		bus.CausedBy(m.Envelope), bus.WithStep(sagaID, string(PhaseResolve)), bus.WithSubject(idToken(imageID)))
	if err != nil {
		return fmt.Errorf("image %d: ask %s to resolve %s: %w", imageID, marketService, p.req.Path, err)
	}
	return nil
}

// eventFilters are the events the catalog consumes: the reports of the
// services its sagas wait for.
func (s *Service) eventFilters() []string {
	p := s.bus.Prefix() + ".evt."
	return []string{
		p + "converter.converted.>", p + "converter.failed.>",
		p + marketService + ".resolved.>", p + marketService + ".failed.>",
		p + builderService + ".built.>", p + builderService + ".failed.>",
		p + cryptoService + ".encrypted.>", p + cryptoService + ".failed.>",
		p + cryptoService + ".slots-changed.>",
	}
}

// handleEvent routes a consumed event by the service that sent it.
func (s *Service) handleEvent(ctx context.Context, m *bus.Msg) error {
	switch m.Service {
	case "converter":
		return s.handleConverterEvent(ctx, m)
	case marketService, builderService:
		return s.handleDockerEvent(ctx, m)
	case cryptoService:
		return s.handleLuksEvent(ctx, m)
	}
	return nil
}

// handleDockerEvent drives docker imports from market-dockerhub's and the
// builder's reports.
func (s *Service) handleDockerEvent(ctx context.Context, m *bus.Msg) error {
	ok := (m.Service == marketService && (m.Name == "resolved" || m.Name == "failed")) ||
		(m.Service == builderService && (m.Name == "built" || m.Name == "failed"))
	if !ok {
		return nil
	}
	if err := schemas.Validate(schemas.KindEvent, m.Service, m.Name, m.Data); err != nil {
		s.log.Error("ignoring an invalid event", "subject", m.Subject, "err", err)
		return bus.Terminal(err)
	}
	switch {
	case m.Name == "resolved":
		var ev schemas.MarketDockerhubResolved
		if err := m.Decode(&ev); err != nil {
			return bus.Terminal(err)
		}
		return s.resolved(ctx, m, ev)
	case m.Name == "built":
		var ev schemas.BuilderBuilt
		if err := m.Decode(&ev); err != nil {
			return bus.Terminal(err)
		}
		return s.built(ctx, m, ev)
	case m.Service == marketService:
		var ev schemas.Failure
		if err := m.Decode(&ev); err != nil {
			return bus.Terminal(err)
		}
		return s.dockerFailed(ctx, m, ev, PhaseResolve, "resolve: "+ev.Error)
	}
	var ev schemas.Failure
	if err := m.Decode(&ev); err != nil {
		return bus.Terminal(err)
	}
	reason := fmt.Sprintf("build (%s): %s", ev.Phase, ev.Error)
	if ev.Retryable {
		reason += " (this may be temporary: delete the image and import it again)"
	}
	return s.dockerFailed(ctx, m, ev, PhaseBuild, reason)
}

// findDockerSaga is findSaga restricted to docker imports.
func (s *Service) findDockerSaga(ctx context.Context, m *bus.Msg, imageID int64) (*saga.Saga, dockerData, error) {
	var d dockerData
	sg, err := s.findSaga(ctx, m.Envelope.CorrelationID, imageID)
	if err != nil {
		return nil, d, err
	}
	if sg.Kind != KindDockerImport {
		return nil, d, saga.ErrNotFound
	}
	return sg, d, sg.Decode(&d)
}

// resolved records the pinned reference and asks the builder for the disk.
func (s *Service) resolved(ctx context.Context, m *bus.Msg, ev schemas.MarketDockerhubResolved) error {
	sg, d, err := s.findDockerSaga(ctx, m, ev.ImageID)
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return nil
	case err != nil:
		return err
	case sg.Status != saga.StatusRunning:
		return nil
	case sg.Phase == PhaseBuild && d.Reference == ev.Reference:
		// A redelivery after a crash between advancing and sending: send
		// again (same ce-id, so JetStream drops a copy that did go out).
		return s.sendBuild(ctx, m, sg.ID, d)
	case sg.Phase != PhaseResolve:
		return nil
	}
	if want := d.pinnedDigest(); want != "" && want != ev.Digest {
		return s.failImport(ctx, sg, fmt.Sprintf("resolve: %s is pinned to %s, but the registry resolved %s", d.URL, want, ev.Digest), &m.Envelope)
	}
	sg, err = s.sagas.Update(ctx, sg.ID, func(sg *saga.Saga) error {
		if sg.Status != saga.StatusRunning || sg.Phase != PhaseResolve {
			return saga.ErrNoChange
		}
		var d dockerData
		if err := sg.Decode(&d); err != nil {
			return err
		}
		d.Reference, d.Digest, d.Platform, d.Kind = ev.Reference, ev.Digest, ev.Platform, ev.Kind
		return sg.SetData(d)
	})
	if err != nil {
		return err
	}
	sg, err = s.sagas.Advance(ctx, sg.ID, PhaseResolve, PhaseBuild, s.cfg.BuildDeadline, "resolved "+ev.Reference)
	if errors.Is(err, saga.ErrWrongPhase) {
		return nil // a duplicate delivery advanced it, or the saga failed meanwhile
	}
	if err != nil {
		return err
	}
	if err := sg.Decode(&d); err != nil {
		return err
	}
	return s.sendBuild(ctx, m, sg.ID, d)
}

// pinnedDigest is the digest the URL itself pins ("" when it names a tag).
func (d dockerData) pinnedDigest() string {
	u, err := dockerurl.Parse(d.URL)
	if err != nil {
		return ""
	}
	return u.Digest
}

// buildDest is where the builder is asked to store its output: the
// image's final blob for a container filesystem, the staging object for a
// carried disk.
func (d dockerData) buildDest() string {
	if d.Kind == schemas.ContentKindContainer {
		return d.Dest
	}
	return d.Staged
}

func (s *Service) sendBuild(ctx context.Context, m *bus.Msg, sagaID string, d dockerData) error {
	cmd := schemas.BuilderBuild{ImageID: d.ImageID, Reference: d.Reference, Kind: d.Kind, Dest: d.buildDest(),
		Distro: d.Distro, Arch: d.Arch}
	if d.Kind == schemas.ContentKindContainer {
		cmd.SizeMiB, cmd.Filesystem = d.SizeMiB, d.Filesystem
		cmd.Format, cmd.Compression = d.Format, d.Compression
	}
	_, err := s.bus.Command(ctx, builderService, "build", cmd,
		bus.CausedBy(m.Envelope), bus.WithStep(sagaID, string(PhaseBuild)), bus.WithSubject(idToken(d.ImageID)))
	if err != nil {
		return fmt.Errorf("image %d: ask the builder: %w", d.ImageID, err)
	}
	return nil
}

// built checks the builder's report and commits a container build, or
// hands a carried disk to the converter.
func (s *Service) built(ctx context.Context, m *bus.Msg, ev schemas.BuilderBuilt) error {
	sg, d, err := s.findDockerSaga(ctx, m, ev.ImageID)
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return s.deleteBuild(ctx, ev) // its image is gone
	case err != nil:
		return err
	case sg.Status == saga.StatusSucceeded:
		return nil // a duplicate
	case sg.Status != saga.StatusRunning:
		// The import failed or timed out while the builder worked.
		s.log.Info("deleting a build that arrived after its import failed", "image", ev.ImageID, "dest", ev.Dest)
		return s.deleteBuild(ctx, ev)
	case sg.Phase == PhaseConvert && d.Built != nil:
		return s.sendDockerConvert(ctx, m, sg.ID, d) // a redelivery after a crash
	case sg.Phase == PhaseCommit && d.Built != nil:
		return s.commit(ctx, sg, &m.Envelope) // idem; commit is idempotent
	case sg.Phase != PhaseBuild:
		return nil
	}
	if reason := s.checkBuilt(d, ev); reason != "" {
		if ev.Dest != d.buildDest() {
			_ = s.deleteBuild(ctx, ev)
		}
		return s.failImport(ctx, sg, reason, &m.Envelope)
	}
	sg, err = s.sagas.Update(ctx, sg.ID, func(sg *saga.Saga) error {
		if sg.Status != saga.StatusRunning || sg.Phase != PhaseBuild {
			return saga.ErrNoChange
		}
		var d dockerData
		if err := sg.Decode(&d); err != nil {
			return err
		}
		d.Built = &ev
		d.SetAttributes = map[string]string{AttrSourceReference: d.URL, AttrSourceDigest: ev.Digest}
		if ev.Distro != "" {
			d.SetAttributes[AttrDistro] = ev.Distro
		}
		if d.Kind == schemas.ContentKindContainer {
			// The build is the image's blob: commit checks it as it
			// checks a converter's report.
			d.Result = &schemas.ConverterConverted{ImageID: ev.ImageID, Dest: ev.Dest, Format: ev.Format,
				VirtualSize: ev.VirtualSize, Size: ev.Size, SHA256: ev.SHA256}
		}
		return sg.SetData(d)
	})
	if err != nil {
		return err
	}
	if d.Kind == schemas.ContentKindContainer {
		return s.commitBuilt(ctx, m, sg.ID, ev)
	}
	sg, err = s.sagas.Advance(ctx, sg.ID, PhaseBuild, PhaseConvert, s.cfg.ConvertDeadline, "built "+ev.Dest)
	if errors.Is(err, saga.ErrWrongPhase) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := sg.Decode(&d); err != nil {
		return err
	}
	return s.sendDockerConvert(ctx, m, sg.ID, d)
}

// commitBuilt advances a container build to commit and commits it.
func (s *Service) commitBuilt(ctx context.Context, m *bus.Msg, sagaID string, ev schemas.BuilderBuilt) error {
	sg, err := s.sagas.Advance(ctx, sagaID, PhaseBuild, PhaseCommit, s.cfg.CommitDeadline, "built "+ev.Dest)
	if errors.Is(err, saga.ErrWrongPhase) {
		return nil // a duplicate delivery advanced it, or the saga failed meanwhile
	}
	if err != nil {
		return err
	}
	return s.commit(ctx, sg, &m.Envelope)
}

// checkBuilt says why a builder's report does not fit the saga ("" when
// it does). A container build is the final blob, so it must also be what
// the converter would have produced: the wanted format, within the
// virtual size limit.
func (s *Service) checkBuilt(d dockerData, ev schemas.BuilderBuilt) string {
	switch {
	case ev.Dest != d.buildDest():
		return fmt.Sprintf("the builder stored the disk at %s instead of %s", ev.Dest, d.buildDest())
	case ev.Digest != d.Digest:
		return fmt.Sprintf("the builder pulled %s, but %s was resolved to %s", ev.Digest, d.URL, d.Digest)
	case d.Kind != schemas.ContentKindContainer:
		return ""
	case ev.Format != d.Format:
		return fmt.Sprintf("the builder stored %s, but %s was asked for", ev.Format, d.Format)
	case ev.VirtualSize <= 0:
		return "the builder reported no virtual size for a built filesystem"
	case s.cfg.MaxVirtualSize > 0 && ev.VirtualSize > s.cfg.MaxVirtualSize:
		return fmt.Sprintf("the built filesystem is %d bytes, over the limit of %d", ev.VirtualSize, s.cfg.MaxVirtualSize)
	}
	return ""
}

// sendDockerConvert asks the converter to import the built disk: it is
// inspected like any upload (raw declared for a built filesystem; a disk
// carried in an image is detected) and its digest checked.
func (s *Service) sendDockerConvert(ctx context.Context, m *bus.Msg, sagaID string, d dockerData) error {
	cmd := schemas.ConverterImport{ImageID: d.ImageID, Source: d.Staged, Format: d.Format,
		Compression: d.Compression, Checksum: "sha256:" + d.Built.SHA256, Dest: d.Dest,
		MaxVirtualSize: s.cfg.MaxVirtualSize}
	if d.Kind == schemas.ContentKindContainer {
		cmd.SourceFormat = schemas.DiskFormatRaw
	}
	_, err := s.bus.Command(ctx, "converter", "import", cmd,
		bus.CausedBy(m.Envelope), bus.WithStep(sagaID, string(PhaseConvert)), bus.WithSubject(idToken(d.ImageID)))
	if err != nil {
		return fmt.Errorf("image %d: ask the converter: %w", d.ImageID, err)
	}
	return nil
}

// deleteBuild deletes a reported build no import owns if it lies where
// builds live: the image's staging object, or its own blobs (a container
// build), unless that blob is what the image now records.
func (s *Service) deleteBuild(ctx context.Context, ev schemas.BuilderBuilt) error {
	if s.isBuildURL(ev.ImageID, ev.Dest) {
		return s.deleteURL(ctx, ev.Dest)
	}
	img, _, err := s.images.Get(ctx, ev.ImageID)
	if err == nil && img.Source == ev.Dest {
		return nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	s.log.Info("deleting a build no import owns", "image", ev.ImageID, "dest", ev.Dest)
	return s.deleteOwned(ctx, schemas.ConverterConverted{ImageID: ev.ImageID, Dest: ev.Dest})
}

// dockerFailed ends a docker import in ERROR on a market or builder
// failure reported while the saga waits for that service.
func (s *Service) dockerFailed(ctx context.Context, m *bus.Msg, ev schemas.Failure, phase saga.Phase, reason string) error {
	if ev.ImageID == nil {
		return nil // a command naming no image: no import waits for it
	}
	sg, _, err := s.findDockerSaga(ctx, m, *ev.ImageID)
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return nil
	case err != nil:
		return err
	case sg.Status.Finished() || sg.Phase != phase:
		return nil // late, or about another attempt
	}
	return s.failImportCode(ctx, sg, ev.Code, reason, &m.Envelope)
}

// dockerExpired words a deadline passed in a docker import's own phases.
func dockerExpired(sg *saga.Saga, d time.Duration) string {
	var data dockerData
	_ = sg.Decode(&data)
	if sg.Phase == PhaseResolve {
		return fmt.Sprintf("resolving %s did not finish within %s", data.URL, d)
	}
	return fmt.Sprintf("building a disk from %s did not finish within %s", data.URL, d)
}

// mergeData overlays v's fields on the saga's data, keeping the fields v
// does not know (a docker import's, when the import code updates it).
func mergeData(sg *saga.Saga, v any) error {
	fields := map[string]json.RawMessage{}
	if len(sg.Data) > 0 {
		if err := json.Unmarshal(sg.Data, &fields); err != nil {
			return fmt.Errorf("saga %s: decode data: %w", sg.ID, err)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	over := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &over); err != nil {
		return err
	}
	for k, raw := range over {
		fields[k] = raw
	}
	return sg.SetData(fields)
}
