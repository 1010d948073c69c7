package catalog

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/fetch"
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
	marketService  = schemas.ServiceMarketDockerhub
	builderService = schemas.ServiceBuilder
)

// Events the docker import waits for (besides the converter's).
var (
	evtResolved      = eventKey(marketService, schemas.EventMarketDockerhubResolved)
	evtResolveFailed = eventKey(marketService, schemas.EventMarketDockerhubFailed)
	evtBuilt         = eventKey(builderService, schemas.EventBuilderBuilt)
	evtBuildFailed   = eventKey(builderService, schemas.EventBuilderFailed)
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
	// Checksums of a rootfs tarball, checked by the builder.
	Checksums []string `json:"checksums,omitempty"`
	// Set by the resolve phase.
	Reference string              `json:"reference,omitempty"`
	Digest    string              `json:"digest,omitempty"`
	Platform  string              `json:"platform,omitempty"`
	Kind      schemas.ContentKind `json:"kind,omitempty"`
	// Built is the builder's report.
	Built *schemas.BuilderBuilt `json:"built,omitempty"`
}

func isDockerPath(p string) bool { return strings.HasPrefix(p, dockerurl.Scheme) }

// dockerFlow declares the docker import.
func (s *Service) dockerFlow() *flow {
	return &flow{
		kind: KindDockerImport, what: "import", reporter: "the converter", fail: s.failImportCode,
		phases: []phase{{
			name:     PhaseResolve,
			commands: []string{"market-dockerhub.resolve"},
			on:       map[string]eventHandler{evtResolved: s.resolved, evtResolveFailed: s.resolveFailed},
			deadline: s.cfg.ResolveDeadline,
			expired: func(sg *saga.Saga, d time.Duration) string {
				return fmt.Sprintf("resolving %s did not finish within %s", dockerURL(sg), d)
			},
		}, s.buildPhase(""), s.convertPhase(), s.commitPhase("import")},
		// A build reported after its import failed or its image went away.
		unclaimed: map[string]eventHandler{evtBuilt: unclaimedReport(s.deleteBuild)},
	}
}

// buildPhase declares the builder's work, shared with the rootfs import;
// what names the source in the expiry message ("" or "the rootfs ").
// Both build and convert delete everything the import may have written:
// the build and the converted disk.
func (s *Service) buildPhase(what string) phase {
	return phase{
		name:       PhaseBuild,
		commands:   []string{"builder.build"},
		on:         map[string]eventHandler{evtBuilt: s.built, evtBuildFailed: s.buildFailed},
		deadline:   s.cfg.BuildDeadline,
		compensate: s.compensateImport,
		expired: func(sg *saga.Saga, d time.Duration) string {
			return fmt.Sprintf("building a disk from %s%s did not finish within %s", what, dockerURL(sg), d)
		},
	}
}

// dockerURL is the URL an import from the builder is about; a rootfs's
// without credentials or query string (a presigned URL's signature).
func dockerURL(sg *saga.Saga) string {
	var d dockerData
	_ = sg.Decode(&d)
	if d.Kind == schemas.ContentKindRootfs {
		return fetch.Redact(d.URL)
	}
	return d.URL
}

// dockerFormat applies the rules of a docker:// path u to an image-create
// of type typ whose URL parsed, and returns the format to store.
func dockerFormat(req schemas.ImageCreate, typ schemas.ImageType, u *dockerurl.URL) (schemas.DiskFormat, error) {
	switch {
	case req.Staged:
		return "", refuse("staged marks an uploaded object the catalog deletes: a docker:// path is not one")
	case req.SourceFormat != "" || req.Checksum != "" || len(req.Checksums) > 0:
		return "", refuse("source_format and checksum describe a disk to import: a docker:// image is pinned by its manifest digest instead (docker://repo@sha256:…)")
	case typ != schemas.ImageTypeOS && typ != schemas.ImageTypeDatablock:
		return "", refuse("a docker:// image becomes an OS or DATABLOCK disk, not %s", typ)
	}
	format := schemas.DiskFormat(u.Format)
	if req.Format != "" && req.Format != format {
		if explicitFormat(req.Path) {
			return "", refuse("format %s conflicts with format=%s in the docker URL", req.Format, u.Format)
		}
		format = req.Format
	}
	if format != schemas.DiskFormatRaw && format != schemas.DiskFormatQcow2 {
		return "", refuse("a docker:// image is stored as raw or qcow2, not %s", format)
	}
	if req.Compression != "" && format != schemas.DiskFormatQcow2 {
		return "", refuse("compression %s applies to qcow2 only, not to format %s", req.Compression, format)
	}
	return format, nil
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

// startDockerSaga records a docker import of u (req's path) in its
// resolve phase.
func (s *Service) startDockerSaga(ctx context.Context, id string, req schemas.ImageCreate, u *dockerurl.URL, format schemas.DiskFormat, base importData) error {
	base.Staged = s.buildURL(base.ImageID, id)
	d := dockerData{importData: base, URL: req.Path, Format: format, Compression: req.Compression,
		SizeMiB: u.SizeMiB, Filesystem: schemas.Filesystem(u.Filesystem),
		Distro: strings.ToLower(u.Distro), Arch: u.Arch}
	return s.start(ctx, id, KindDockerImport, base.ImageID, d, base.Staged, base.Dest)
}

// sendResolve asks market-dockerhub to pin the URL.
func (s *Service) sendResolve(ctx context.Context, m *bus.Msg, path string, imageID int64, sagaID string) error {
	return s.send(ctx, m.Envelope, sagaID, PhaseResolve, imageID, marketService, "resolve",
		schemas.MarketDockerhubResolve{ImageID: imageID, URL: path})
}

// resolveFailed and buildFailed end a docker import in ERROR on a market
// or builder failure reported while the saga waits for that service.
func (s *Service) resolveFailed(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	var ev schemas.Failure
	if err := m.Decode(&ev); err != nil {
		return bus.Terminal(err)
	}
	return s.dockerFailed(ctx, m, sg, PhaseResolve, ev.Code, "resolve: "+ev.Error)
}

func (s *Service) buildFailed(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	var ev schemas.Failure
	if err := m.Decode(&ev); err != nil {
		return bus.Terminal(err)
	}
	reason := fmt.Sprintf("build (%s): %s", ev.Phase, ev.Error)
	if ev.Retryable {
		reason += " (this may be temporary: delete the image and import it again)"
	}
	return s.dockerFailed(ctx, m, sg, PhaseBuild, ev.Code, reason)
}

// resolved records the pinned reference and asks the builder for the disk.
func (s *Service) resolved(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	ev, d, err := decodeStep[schemas.MarketDockerhubResolved, dockerData](m, sg)
	if err != nil {
		return err
	}
	switch {
	case sg.Status != saga.StatusRunning:
		return nil
	case sg.Phase == PhaseBuild && d.Reference == ev.Reference:
		// A redelivery after a crash between advancing and sending: send
		// again (same ce-id, so JetStream drops a copy that did go out).
		return s.sendBuild(ctx, m, sg.ID, d)
	case sg.Phase != PhaseResolve:
		return nil
	}
	if ev.Kind == schemas.ContentKindRootfs {
		return s.failImport(ctx, sg, fmt.Sprintf("resolve: %s resolved to kind %s: a docker:// image carries a container filesystem or a disk", d.URL, ev.Kind), &m.Envelope)
	}
	if want := d.pinnedDigest(); want != "" && want != ev.Digest {
		return s.failImport(ctx, sg, fmt.Sprintf("resolve: %s is pinned to %s, but the registry resolved %s", d.URL, want, ev.Digest), &m.Envelope)
	}
	sg, err = updateData(ctx, s.sagas, sg.ID, PhaseResolve, func(_ *saga.Saga, d *dockerData) {
		d.Reference, d.Digest, d.Platform, d.Kind = ev.Reference, ev.Digest, ev.Platform, ev.Kind
	})
	if err != nil {
		return err
	}
	sg, err = s.advance(ctx, sg, PhaseResolve, PhaseBuild, "resolved "+ev.Reference)
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
// image's final blob for a filesystem it builds (container or rootfs), the
// staging object for a carried disk.
func (d dockerData) buildDest() string {
	if d.buildsFilesystem() {
		return d.Dest
	}
	return d.Staged
}

// buildsFilesystem reports whether the builder makes the image's final
// blob itself: a filesystem from a container image or a rootfs.
func (d dockerData) buildsFilesystem() bool {
	return d.Kind == schemas.ContentKindContainer || d.Kind == schemas.ContentKindRootfs
}

func (s *Service) sendBuild(ctx context.Context, m *bus.Msg, sagaID string, d dockerData) error {
	cmd := schemas.BuilderBuild{ImageID: d.ImageID, Reference: d.Reference, Kind: d.Kind, Dest: d.buildDest(),
		Distro: d.Distro, Arch: d.Arch}
	if d.Kind == schemas.ContentKindRootfs {
		cmd.URL, cmd.Checksums = d.URL, d.Checksums
	}
	if d.buildsFilesystem() {
		cmd.SizeMiB, cmd.Filesystem = d.SizeMiB, d.Filesystem
		cmd.Format, cmd.Compression = d.Format, d.Compression
	}
	return s.send(ctx, m.Envelope, sagaID, PhaseBuild, d.ImageID, builderService, "build", cmd)
}

// built checks the builder's report and commits a container build, or
// hands a carried disk to the converter.
func (s *Service) built(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	ev, d, err := decodeStep[schemas.BuilderBuilt, dockerData](m, sg)
	if err != nil {
		return err
	}
	switch {
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
	sg, err = updateData(ctx, s.sagas, sg.ID, PhaseBuild, func(_ *saga.Saga, d *dockerData) {
		d.Built = &ev
		d.SetAttributes = map[string]string{AttrSourceDigest: ev.Digest}
		if d.Kind != schemas.ContentKindRootfs {
			d.SetAttributes[AttrSourceReference] = d.URL // a rootfs's url is its PATH
		}
		if ev.Distro != "" {
			d.SetAttributes[AttrDistro] = ev.Distro
		}
		if d.buildsFilesystem() {
			// The build is the image's blob: commit checks it as it
			// checks a converter's report.
			d.Result = &schemas.ConverterConverted{ImageID: ev.ImageID, Dest: ev.Dest, Format: ev.Format,
				VirtualSize: ev.VirtualSize, Size: ev.Size, SHA256: ev.SHA256, S3Checksum: ev.S3Checksum}
		}
	})
	if err != nil {
		return err
	}
	if d.buildsFilesystem() {
		return s.commitBuilt(ctx, m, sg, ev)
	}
	sg, err = s.advance(ctx, sg, PhaseBuild, PhaseConvert, "built "+ev.Dest)
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
func (s *Service) commitBuilt(ctx context.Context, m *bus.Msg, sg *saga.Saga, ev schemas.BuilderBuilt) error {
	sg, err := s.advance(ctx, sg, PhaseBuild, PhaseCommit, "built "+ev.Dest)
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
	case d.Kind != schemas.ContentKindRootfs && ev.Digest != d.Digest:
		return fmt.Sprintf("the builder pulled %s, but %s was resolved to %s", ev.Digest, d.URL, d.Digest)
	case d.Kind == schemas.ContentKindRootfs && !d.wants(ev.Digest):
		return fmt.Sprintf("the builder built from a tarball of %s, but its checksums are %v", ev.Digest, d.Checksums)
	case !d.buildsFilesystem():
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

// wants reports whether digest ("sha256:<hex>") fits the checksums of a
// rootfs: true when they name no sha256.
func (d dockerData) wants(digest string) bool {
	for _, c := range d.Checksums {
		if strings.HasPrefix(c, "sha256:") {
			return c == digest
		}
	}
	return true
}

// sendDockerConvert asks the converter to import the built disk: it is
// inspected like any upload (raw declared for a built filesystem; a disk
// carried in an image is detected) and its digest checked.
func (s *Service) sendDockerConvert(ctx context.Context, m *bus.Msg, sagaID string, d dockerData) error {
	cmd := schemas.ConverterImport{ImageID: d.ImageID, Source: d.Staged, Format: d.Format,
		Compression: d.Compression, Checksum: "sha256:" + d.Built.SHA256, Dest: d.Dest,
		MaxVirtualSize: d.maxVirtualSize(s.cfg.MaxVirtualSize)}
	if d.Kind == schemas.ContentKindContainer {
		cmd.SourceFormat = schemas.DiskFormatRaw
	}
	return s.send(ctx, m.Envelope, sagaID, PhaseConvert, d.ImageID, schemas.ServiceConverter, "import", cmd)
}

// deleteBuild deletes a reported build no import owns if it lies where
// builds live: the image's staging object, or its own blobs (a container
// build), unless that blob is what the image now records.
func (s *Service) deleteBuild(ctx context.Context, ev schemas.BuilderBuilt) error {
	if s.isBuildURL(ev.ImageID, ev.Dest) {
		return s.deleteURL(ctx, ev.Dest)
	}
	if kept, err := s.images.recordsBlob(ctx, ev.ImageID, ev.Dest); kept || err != nil {
		return err
	}
	s.log.Info("deleting a build no import owns", "image", ev.ImageID, "dest", ev.Dest)
	return s.deleteOwned(ctx, schemas.ConverterConverted{ImageID: ev.ImageID, Dest: ev.Dest})
}

// dockerFailed ends a docker import in ERROR on a failure reported while
// the saga waits in phase.
func (s *Service) dockerFailed(ctx context.Context, m *bus.Msg, sg *saga.Saga, ph saga.Phase, code, reason string) error {
	if sg.Status.Finished() || sg.Phase != ph {
		return nil // late, or about another attempt
	}
	return s.failImportCode(ctx, sg, code, reason, &m.Envelope)
}
