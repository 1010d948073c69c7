package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/schemas"
)

// plan is an image-create command checked against the catalog's rules.
type plan struct {
	req    schemas.ImageCreate
	ds     Datastore
	typ    schemas.ImageType
	format schemas.DiskFormat // blank disks: raw or qcow2
	staged string             // s3:// URL of the upload to delete afterwards
	docker *dockerurl.URL     // the parsed docker:// path of a docker import
	luks   bool               // an empty LUKS volume, made by crypto-luks
	rootfs bool               // a root filesystem tarball the builder makes a disk of
	ova    bool               // an OVA the converter unpacks (ovasaga.go)
	// checksums are checksum and checksums together, one per algorithm.
	checksums []string
}

// planCreate applies the rules a schema cannot express. Every error is a
// refusal that says what to change. stager is who sent the command (a
// staged path must be one of theirs).
func (s *Service) planCreate(ctx context.Context, req schemas.ImageCreate, stager string) (plan, error) {
	p := plan{req: req, typ: req.Type}
	if isDockerPath(req.Path) {
		// The URL first: a malformed one is the problem to report.
		u, err := dockerurl.Parse(req.Path)
		if err != nil {
			return p, &refusal{err}
		}
		p.docker = &u
	}
	if req.Datastore == "" {
		p.req.Datastore = "default"
	}
	ds, err := s.datastore(ctx, p.req.Datastore)
	if err != nil {
		return p, err
	}
	if err := callerOf(ctx).mayUseDatastore(ds); err != nil {
		return p, err
	}
	p.ds = ds
	if p.checksums, err = checksumsOf(req); err != nil {
		return p, err
	}
	// A rootfs's size_mib is its filesystem's, not an empty DATABLOCK's.
	blank := req.SizeMiB > 0 && !req.Rootfs
	if p.typ == "" {
		p.typ = schemas.ImageTypeOS
		if blank {
			p.typ = schemas.ImageTypeDatablock
		}
	}
	if err := accepts(ds, p.typ); err != nil {
		return p, &refusal{err}
	}
	if _, ok := req.Attributes[AttrLUKSSecret]; ok {
		return p, refuse("attribute %s is set by the catalog on LUKS images: it cannot be given", AttrLUKSSecret)
	}
	if req.Ova {
		return p, s.planOVA(&p, stager)
	}
	if req.LUKS {
		return p, planLuks(&p)
	}
	if req.Rootfs {
		return p, s.planRootfs(&p, stager)
	}
	switch {
	case req.Persistent && IsFileType(p.typ):
		return p, refuse("type %s is a file type: file images cannot be persistent", p.typ)
	case req.Path != "" && blank:
		return p, refuse("give either path (to import data) or size_mib (to make an empty DATABLOCK), not both")
	case blank && p.typ != schemas.ImageTypeDatablock:
		return p, refuse("size_mib makes an empty DATABLOCK: an image of type %s needs a path to import from", p.typ)
	case !blank && req.FS != "":
		return p, refuse("fs %s applies to an empty DATABLOCK (size_mib): an imported image keeps its own filesystems", req.FS)
	case blank && (req.SourceFormat != "" || len(p.checksums) > 0 || req.Staged):
		return p, refuse("source_format, checksum and staged describe imported data: they do not apply to an empty DATABLOCK (size_mib)")
	case req.Compression != "" && req.Format != "" && req.Format != schemas.DiskFormatQcow2:
		return p, refuse("compression %s applies to qcow2 only, not to format %s", req.Compression, req.Format)
	}
	if blank {
		p.format = req.Format
		if p.format == "" {
			p.format = schemas.DiskFormatRaw
		}
		if p.format != schemas.DiskFormatRaw && p.format != schemas.DiskFormatQcow2 {
			return p, refuse("an empty DATABLOCK is made as raw or qcow2, not %s", p.format)
		}
	}
	if p.docker != nil {
		p.format, err = dockerFormat(p.req, p.typ, p.docker)
		return p, err
	}
	return p, s.planSource(&p, stager)
}

// planSource checks an import's path: an s3:// one only where imports
// read, a staged one only if stager staged it.
func (s *Service) planSource(p *plan, stager string) error {
	if err := s.locations().CheckSource(p.req.Path); err != nil {
		return &refusal{err}
	}
	if p.req.Staged {
		if err := s.locations().CheckStaged(p.req.Path, stager); err != nil {
			return &refusal{err}
		}
		p.staged = p.req.Path
	}
	return nil
}

// checksumsOf is checksum and checksums together, one per algorithm:
// checksums may not name an algorithm twice, and checksum repeats one of
// them only with the same digest.
func checksumsOf(req schemas.ImageCreate) ([]string, error) {
	seen := map[string]bool{}
	for _, c := range req.Checksums {
		algo, _, _ := strings.Cut(c, ":")
		if seen[algo] {
			return nil, refuse("checksums names %s twice: give at most one checksum per algorithm (md5, sha256, sha512)", algo)
		}
		seen[algo] = true
	}
	parsed, err := fetch.ParseChecksums(append([]string{req.Checksum}, req.Checksums...)...)
	if err != nil {
		return nil, &refusal{err}
	}
	out := make([]string, len(parsed))
	for i, c := range parsed {
		out[i] = c.String()
	}
	return out, nil
}

// planRootfs applies the rules of a rootfs import (rootfs: true): an OS
// disk the builder makes from a tarball at an http(s):// or s3:// path.
func (s *Service) planRootfs(p *plan, stager string) error {
	req := p.req
	switch {
	case p.docker != nil:
		return refuse("rootfs marks a root filesystem tarball at an http(s):// or s3:// path: a docker:// image is built from its registry without it")
	case req.Path == "":
		return refuse("rootfs needs a path: the http(s):// or s3:// URL of the root filesystem tarball")
	case p.typ != schemas.ImageTypeOS:
		return refuse("a rootfs becomes a bootable OS disk, not %s", p.typ)
	case req.SourceFormat != "":
		return refuse("source_format %s describes a disk to import: a rootfs is a tarball (tar, gzip, xz or zstd, detected)", req.SourceFormat)
	}
	p.format = req.Format
	if p.format == "" {
		p.format = DefaultRootfsFormat
	}
	if p.format != schemas.DiskFormatRaw && p.format != schemas.DiskFormatQcow2 {
		return refuse("a rootfs is stored as raw or qcow2, not %s", p.format)
	}
	if req.Compression != "" && p.format != schemas.DiskFormatQcow2 {
		return refuse("compression %s applies to qcow2 only, not to format %s", req.Compression, p.format)
	}
	if err := s.planSource(p, stager); err != nil {
		return err
	}
	p.rootfs = true
	return nil
}

// planLuks applies the rules of an empty LUKS volume (luks: true).
func planLuks(p *plan) error {
	req := p.req
	switch {
	case req.SizeMiB <= 0 || req.Path != "":
		return refuse("luks makes an empty LUKS volume of size_mib: give size_mib and no path (to encrypt existing data, import it and use image-encrypt)")
	case p.typ != schemas.ImageTypeDatablock && p.typ != schemas.ImageTypeOS:
		return refuse("an empty LUKS volume is a DATABLOCK or an OS disk, not %s", p.typ)
	case req.FS != "":
		return refuse("fs %s cannot be made inside an empty LUKS volume: the catalog never sees its plaintext; make the filesystem from the VM that opens it", req.FS)
	case req.Format != "" && req.Format != schemas.DiskFormatLUKS:
		return refuse("an empty LUKS volume is stored as luks, not %s", req.Format)
	case req.Compression != "" || req.SourceFormat != "" || req.Checksum != "" || len(req.Checksums) > 0 || req.Staged:
		return refuse("compression, source_format, checksum and staged describe imported data: they do not apply to an empty LUKS volume")
	}
	p.luks, p.format = true, schemas.DiskFormatLUKS
	return nil
}

// dest is where the converter stores the image's blob: a fresh key of this
// saga, images/<id>/<saga>/disk[.<format>], which the converter checks is
// the one derived from the image and the saga. The extension is the
// wanted format, else the declared one; when neither is known it is left
// off, and the record's format comes from the converter's report.
func (p plan) dest(id int64, sagaID string) string {
	key := blob.AttemptPrefix(id, sagaID) + "disk"
	switch {
	case p.format != "":
		key += "." + string(p.format)
	case p.req.Format != "":
		key += "." + string(p.req.Format)
	case IsFileType(p.typ):
		key += ".raw"
	case p.req.SourceFormat != "":
		key += "." + string(p.req.SourceFormat)
	}
	return blob.URL(p.ds.Bucket, key)
}

// create registers an image LOCKED and starts its import saga. Each step
// tolerates having been done already, so a redelivery after a crash
// finishes the job with the same image ID instead of starting another.
func (s *Service) create(ctx context.Context, m *bus.Msg, prior *processed) (processed, error) {
	none := processed{ImageID: -1}
	var req schemas.ImageCreate
	if err := decode(m, &req); err != nil {
		return none, err
	}
	p, err := s.planCreate(ctx, req, callerOf(ctx).stager())
	if err != nil {
		return none, err
	}
	res, err := s.claimIDs(ctx, m, prior, req.Name)
	if err != nil {
		return none, err
	}
	id, sagaID := res.ImageID, res.SagaID
	data := importData{ImageID: id, CommandID: m.Envelope.ID, Command: m.Subject, Dest: p.dest(id, sagaID), Path: p.req.Path, Staged: p.staged,
		TypeByFormat: p.req.Type == "" && p.typ == schemas.ImageTypeOS}
	var quota *quotaView // read once: for the allowance, then for the record's check
	if p.req.SizeMiB == 0 {
		// An import whose size is known only once fetched.
		if quota, err = s.newImageQuotas(ctx, p.ds.Name, id); err != nil {
			return res, err
		}
		data.SizeLimit, data.SizeLimitedBy = quota.sizeAllowance(p.ds.Name, id)
	}
	start := func() error { return s.startCreate(ctx, p, sagaID, data) }
	if err := s.register(ctx, m, res, start, s.record(p, id, sagaID), quota); err != nil {
		return res, err
	}
	switch {
	case p.docker != nil:
		return res, s.sendResolve(ctx, m, p.req.Path, data.ImageID, sagaID)
	case p.rootfs:
		return res, s.sendBuild(ctx, m, sagaID, rootfsData(data, p.req, p.format, p.checksums))
	case p.luks:
		return res, s.sendLuks(ctx, m, sagaID, luksData{importData: data, SizeMiB: req.SizeMiB})
	case p.ova:
		return res, s.sendUnpack(ctx, m, p, sagaID, data)
	}
	return res, s.sendConvert(ctx, m, p, data, sagaID)
}

// startCreate starts the saga an image-create needs: a docker import, a
// rootfs import, an empty LUKS volume, or an import.
func (s *Service) startCreate(ctx context.Context, p plan, sagaID string, data importData) error {
	switch {
	case p.docker != nil:
		return s.startDockerSaga(ctx, sagaID, p.req, p.docker, p.format, data)
	case p.rootfs:
		return s.startRootfsSaga(ctx, sagaID, rootfsData(data, p.req, p.format, p.checksums))
	case p.luks:
		return s.start(ctx, sagaID, KindLuksCreate, data.ImageID, luksData{importData: data, SizeMiB: p.req.SizeMiB}, data.Dest)
	case p.ova:
		return s.startOVASaga(ctx, p, sagaID, data)
	}
	return s.start(ctx, sagaID, KindImport, data.ImageID, data, data.Dest)
}

// record is the LOCKED record of a new image.
func (s *Service) record(p plan, id int64, sagaID string) *schemas.Image {
	t := now()
	img := &schemas.Image{
		ID:          id,
		Name:        p.req.Name,
		Datastore:   p.ds.Name,
		Type:        p.typ,
		Persistent:  p.req.Persistent,
		DevPrefix:   p.req.DevPrefix,
		Target:      p.req.Target,
		State:       schemas.ImageStateLocked,
		Description: p.req.Description,
		Attributes:  p.req.Attributes,
		Origin:      p.req.Path,
		SagaID:      sagaID,
		CreatedAt:   t,
		UpdatedAt:   t,
	}
	if p.req.Origin != "" {
		img.Origin = p.req.Origin
	}
	switch {
	case p.rootfs && p.req.SizeMiB > 0:
		img.Size = p.req.SizeMiB << 20 // the filesystem size asked for
	case p.req.SizeMiB > 0:
		img.Origin = "blank"
		img.Size = p.req.SizeMiB << 20 // declared: the quotas count it from now
	case p.docker != nil && p.docker.SizeMiB > 0:
		img.Size = p.docker.SizeMiB << 20 // the filesystem size the URL asks for
	}
	if len(img.Attributes) == 0 {
		img.Attributes = nil
	}
	return img
}

// sendConvert asks the converter for the data. Its ID is the saga step's,
// so a resend is a duplicate JetStream drops.
func (s *Service) sendConvert(ctx context.Context, m *bus.Msg, p plan, data importData, sagaID string) error {
	if p.req.SizeMiB > 0 {
		return s.send(ctx, m.Envelope, sagaID, PhaseConvert, data.ImageID, schemas.ServiceConverter, "create-blank",
			schemas.ConverterCreateBlank{ImageID: data.ImageID, SizeMiB: p.req.SizeMiB, Format: p.format, FS: p.req.FS, Dest: data.Dest})
	}
	cmd := schemas.ConverterImport{
		ImageID: data.ImageID, Source: p.req.Path, SourceFormat: p.req.SourceFormat, Format: p.req.Format,
		Compression: p.req.Compression, Checksums: p.checksums, Dest: data.Dest,
		MaxVirtualSize: data.maxVirtualSize(s.cfg.MaxVirtualSize),
	}
	if IsFileType(p.typ) {
		// Kernels, initrds and context files are not disks: they are
		// stored byte for byte, never inspected or converted.
		cmd.File, cmd.Format, cmd.SourceFormat, cmd.Compression = true, "", "", ""
	}
	return s.send(ctx, m.Envelope, sagaID, PhaseConvert, data.ImageID, schemas.ServiceConverter, "import", cmd)
}

// planOVA applies the rules of an OVA import (ova: true).
func (s *Service) planOVA(p *plan, stager string) error {
	req := p.req
	switch {
	case p.docker != nil || req.Rootfs || req.LUKS:
		return refuse("ova marks an OVA at an http(s):// or s3:// path: not with docker://, rootfs or luks")
	case req.Path == "":
		return refuse("ova needs a path: the http(s):// or s3:// URL of the OVA (or an upload of it)")
	case req.SizeMiB > 0 || req.FS != "":
		return refuse("size_mib and fs make an empty DATABLOCK: an OVA brings its own disks")
	case p.typ != schemas.ImageTypeOS:
		return refuse("an OVA's first disk becomes an OS image, not %s (its other disks are DATABLOCKs)", p.typ)
	case req.SourceFormat != "":
		return refuse("source_format %s describes a disk: an OVA is a tar, and each disk's format is detected", req.SourceFormat)
	case req.Compression != "" && req.Format != "" && req.Format != schemas.DiskFormatQcow2:
		return refuse("compression %s applies to qcow2 only, not to format %s", req.Compression, req.Format)
	}
	if err := s.planSource(p, stager); err != nil {
		return err
	}
	// A streamOptimized VMDK is an export format: unless told otherwise,
	// every disk is stored as qcow2, which QEMU runs best.
	p.ova, p.format = true, req.Format
	if p.format == "" {
		p.format = schemas.DiskFormatQcow2
	}
	return nil
}

// startOVASaga records an OVA import in its unpack phase.
func (s *Service) startOVASaga(ctx context.Context, p plan, sagaID string, data importData) error {
	return s.start(ctx, sagaID, KindOVAImport, data.ImageID, s.ovaData(ctx, p, sagaID, data), data.Dest)
}

func (s *Service) ovaData(ctx context.Context, p plan, sagaID string, data importData) ovaData {
	origin := p.req.Origin
	if origin == "" {
		origin = p.req.Path
	}
	upload := data.Staged
	data.Staged = "" // the OVA is not the first disk's source: Upload is deleted once unpacked
	return ovaData{importData: data, Upload: upload, Source: p.req.Path, Origin: origin, Checksums: p.checksums, Staging: s.locations().OVAStaging(sagaID),
		Datastore: p.ds.Name, Owner: s.ownerName(ctx), Name: p.req.Name, Format: p.format, Compression: p.req.Compression,
		Persistent: p.req.Persistent}
}

// sendUnpack asks the converter to unpack the OVA.
func (s *Service) sendUnpack(ctx context.Context, m *bus.Msg, p plan, sagaID string, data importData) error {
	d := s.ovaData(ctx, p, sagaID, data)
	cmd := schemas.ConverterOvaUnpack{ImageID: d.ImageID, Source: d.Source, Checksums: d.Checksums, Staging: d.Staging,
		MaxVirtualSize: d.maxVirtualSize(s.cfg.MaxVirtualSize)}
	return s.send(ctx, m.Envelope, sagaID, PhaseUnpack, d.ImageID, schemas.ServiceConverter, schemas.CommandConverterOvaUnpack, cmd)
}

// createOrDrop is create; when the catalog refuses an image-create it
// sent itself (an OVA's further disk: a quota, a name taken meanwhile),
// the staged disk that import would have consumed is deleted, since no
// one else will. A user's refused upload is kept, for another create
// (another name, a quota raised), until the staged sweep removes it: the
// refusal says so.
func (s *Service) createOrDrop(ctx context.Context, m *bus.Msg, prior *processed) (processed, error) {
	res, err := s.create(ctx, m, prior)
	var req schemas.ImageCreate
	if !isRefusal(err) || m.Decode(&req) != nil || !req.Staged {
		return res, err
	}
	c := callerOf(ctx)
	switch {
	case s.locations().CheckStaged(req.Path, c.stager()) != nil:
		// Not the sender's: neither kept nor dropped on their behalf.
	case c.service == "":
		return res, &refusal{fmt.Errorf("%w (the upload %s is kept: an image-create may still import it, with staged, until %s after it was uploaded, when the catalog deletes it)",
			err, req.Path, s.cfg.UploadExpiry)}
	case c.service == ServiceName:
		if derr := s.deleteURL(ctx, req.Path); derr != nil {
			s.log.Warn("refused OVA disk not deleted", "path", req.Path, "err", derr)
		}
	}
	return res, err
}
