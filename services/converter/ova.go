package converter

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/inspect"
	"github.com/slipway/slipway/pkg/ovf"
	"github.com/slipway/slipway/schemas"
)

// An OVA (DSP0243 §5.3) is a tar of an OVF package: the descriptor (.ovf)
// first, then the files it references and optionally a manifest (.mf)
// and a certificate (.cert). ova-unpack streams it once: the descriptor is
// read before any disk byte, so a hostile one is refused before the disks
// are downloaded; each referenced file is written, hashed on the way, into
// a directory opened as an os.Root (no entry can reach outside it, and
// every name passed ovf.CheckName first); after the end, the manifest is
// verified, each disk's header checked (inspect, bound by the descriptor's
// capacity and the import's limit), and each disk staged for the import
// the catalog starts of it, which runs the same inspection and conversion
// as any upload.

// errPackage marks an OVA whose content is refused (invalid-input).
var errPackage = ovf.ErrInvalid

// maxOVAEntries caps the tar entries of an OVA: the descriptor's files,
// the descriptor, a manifest and a certificate.
const maxOVAEntries = ovf.DefaultMaxFiles + 3

func (s *Service) handleOvaUnpack(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.ConverterOvaUnpack
	if err := decode(m, schemas.CommandConverterOvaUnpack, &cmd); err != nil {
		return s.reject(ctx, m, schemas.ConverterPhaseFetch, err)
	}
	if err := s.checkOVALocations(m, cmd); err != nil {
		return s.reject(ctx, m, schemas.ConverterPhaseFetch, err)
	}
	j := s.start(m, schemas.CommandConverterOvaUnpack, schemas.ConverterPhaseFetch, cmd.ImageID, cmd.Source, cmd.Staging)
	stop := s.jobs.Start(ctx, s.w, m, cmd.ImageID, j)
	out, err := s.runOvaUnpack(ctx, j, cmd)
	stop()
	return s.phased.Settle(ctx, m, cmd.ImageID, blob.OVADisk(cmd.Staging, 0), schemas.EventConverterOvaUnpacked, out, err)
}

// checkOVALocations refuses a staging location that is not the one
// derived from the saga, and an s3:// source outside where imports read.
func (s *Service) checkOVALocations(m *bus.Msg, cmd schemas.ConverterOvaUnpack) error {
	if err := s.cfg.Locations.CheckOVAStaging(cmd.Staging, m.Envelope.CorrelationID); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	if err := s.cfg.Locations.CheckSource(cmd.Source); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	return nil
}

// runOvaUnpack reads, checks and stages an OVA. On failure, whatever it
// staged is deleted.
func (s *Service) runOvaUnpack(ctx context.Context, j *job, cmd schemas.ConverterOvaUnpack) (out schemas.ConverterOvaUnpacked, err error) {
	dir, err := os.MkdirTemp(s.w.Dir(), fmt.Sprintf("ova-%d-*", cmd.ImageID))
	if err != nil {
		return out, failed(schemas.ConverterPhaseFetch, fmt.Errorf("work directory: %w", err))
	}
	defer os.RemoveAll(dir)
	limit := s.ovaLimit(cmd)
	pkg, err := s.readPackage(ctx, j, cmd, dir, limit)
	if err != nil {
		return out, err
	}
	disks, err := pkg.checkDisks(limit)
	if err != nil {
		return out, failed(schemas.ConverterPhaseInspect, err)
	}
	if err := s.stageDisks(ctx, j, cmd, pkg, disks); err != nil {
		return out, failed(schemas.ConverterPhaseUpload, err)
	}
	d := pkg.desc
	out = schemas.ConverterOvaUnpacked{ImageID: cmd.ImageID, Name: clip(d.Name, 256), OSType: clip(d.OSType, 128),
		OSDescription: clip(d.OSDescription, 256), Cpus: int64(d.CPUs), MemoryMiB: d.MemoryMiB, Manifest: pkg.manifest != nil, Disks: disks}
	if d.OSID >= 0 {
		out.OSID = int64(d.OSID)
	}
	return out, nil
}

// ovaLimit is the largest virtual size of one disk.
func (s *Service) ovaLimit(cmd schemas.ConverterOvaUnpack) int64 {
	if cmd.MaxVirtualSize > 0 && cmd.MaxVirtualSize < s.cfg.MaxVirtualSize {
		return cmd.MaxVirtualSize
	}
	return s.cfg.MaxVirtualSize
}

// ovaPackage is an OVA read into a confined directory.
type ovaPackage struct {
	dir      string   // the os.Root's directory
	root     *os.Root // where the referenced files are
	desc     *ovf.Descriptor
	manifest ovf.Manifest // nil: the package has none
	// sums are the digests of every file read, by name.
	sums map[string]map[string]string
}

// newPackage makes dir/files, where a package's files go, and opens it
// as the os.Root every file is written through.
func newPackage(dir string) (*ovaPackage, error) {
	files := filepath.Join(dir, "files")
	if err := os.Mkdir(files, 0o700); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(files)
	if err != nil {
		return nil, err
	}
	return &ovaPackage{dir: files, root: root, sums: map[string]map[string]string{}}, nil
}

// fetchOptions are the options of a package's fetches: max bytes each,
// checksums (those of the command, for what it names), verbatim (a file
// the descriptor references is hashed as packed).
func (s *Service) fetchOptions(j *job, dir string, maxBytes int64, checksums []string, verbatim bool) fetch.Options {
	opts := s.cfg.Fetch
	opts.Store = s.store
	opts.Checksums = checksums
	opts.MaxBytes = min(s.cfg.MaxInputBytes, maxBytes)
	opts.Progress, opts.TempDir, opts.Verbatim = j.Update, dir, verbatim
	return opts
}

// readPackage reads the package cmd names: an OVA, or a descriptor
// (.ovf) whose files lie beside it.
func (s *Service) readPackage(ctx context.Context, j *job, cmd schemas.ConverterOvaUnpack, dir string, limit int64) (*ovaPackage, error) {
	pkg, err := newPackage(dir)
	if err != nil {
		return nil, failed(schemas.ConverterPhaseFetch, err)
	}
	defer pkg.root.Close()
	j.SetPhase(schemas.ConverterPhaseFetch, 0)
	if isOVFSource(cmd.Source) {
		err = s.readOVF(ctx, j, cmd, dir, pkg, limit)
	} else {
		err = s.readOVA(ctx, j, cmd, dir, pkg, limit)
	}
	if err != nil {
		return nil, err
	}
	if err := pkg.complete(); err != nil {
		return nil, failed(schemas.ConverterPhaseInspect, err)
	}
	return pkg, nil
}

// readOVA streams the OVA at cmd.Source into pkg.
func (s *Service) readOVA(ctx context.Context, j *job, cmd schemas.ConverterOvaUnpack, dir string, pkg *ovaPackage, limit int64) error {
	opts := s.fetchOptions(j, dir, int64(ovf.DefaultMaxDisks)*inputAllowance(limit), append([]string{cmd.Checksum}, cmd.Checksums...), false)
	st, err := fetch.Open(ctx, cmd.Source, opts)
	if err != nil {
		return failed(schemas.ConverterPhaseFetch, err)
	}
	defer st.Close()
	if err := pkg.read(tar.NewReader(st), limit); err != nil {
		if serr := st.Err(); serr != nil {
			return failed(schemas.ConverterPhaseFetch, serr) // the download failed, not the package
		}
		return failed(schemas.ConverterPhaseInspect, err)
	}
	if err := st.Verify(); err != nil {
		return failed(schemas.ConverterPhaseFetch, err)
	}
	return nil
}

// complete checks, once every file is read, that the package has a
// descriptor and the file of every disk, and verifies its manifest.
func (p *ovaPackage) complete() error {
	if p.desc == nil {
		return fmt.Errorf("%w: the package holds no OVF descriptor (.ovf)", errPackage)
	}
	for _, d := range p.desc.Disks {
		if _, ok := p.sums[d.File.Href]; !ok {
			return fmt.Errorf("%w: disk %s's file %s is not in the package", errPackage, d.ID, d.File.Href)
		}
	}
	if p.manifest != nil {
		return p.manifest.Verify(p.sums)
	}
	return nil
}

// read reads the tar's entries: the descriptor first, then files it
// references, a manifest and a certificate (read, not verified); anything
// else is refused.
func (p *ovaPackage) read(tr *tar.Reader, limit int64) error {
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: the OVA is not a readable tar archive: %v", errPackage, err)
		}
		if n >= maxOVAEntries {
			return fmt.Errorf("%w: the OVA has more than %d entries", errPackage, maxOVAEntries)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := entryName(hdr)
		if err != nil {
			return err
		}
		if _, dup := p.sums[name]; dup {
			return fmt.Errorf("%w: the OVA holds %s twice", errPackage, name)
		}
		if err := p.entry(name, tr, limit); err != nil {
			return err
		}
	}
	return nil
}

// entryName is the checked name of a tar entry: a regular file with a
// plain name ("./" in front is tolerated, as tar writes it).
func entryName(hdr *tar.Header) (string, error) {
	name := strings.TrimPrefix(hdr.Name, "./")
	if err := ovf.CheckName(name); err != nil {
		return "", fmt.Errorf("%w: OVA entry: %v", errPackage, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return "", fmt.Errorf("%w: OVA entry %s is not a regular file (type %q): an OVA holds only files", errPackage, name, hdr.Typeflag)
	}
	return name, nil
}

// entry reads one file of the package.
func (p *ovaPackage) entry(name string, r io.Reader, limit int64) error {
	h := ovf.NewHasher()
	r = io.TeeReader(r, h)
	defer func() { p.sums[name] = h.Sums() }()
	ext := strings.ToLower(filepath.Ext(name))
	switch {
	case p.desc == nil && ext != ".ovf":
		return fmt.Errorf("%w: the OVA's first file is %s, not the OVF descriptor (.ovf)", errPackage, name)
	case p.desc == nil:
		desc, err := ovf.Parse(r, ovf.Limits{MaxCapacity: limit})
		if err != nil {
			return fmt.Errorf("descriptor %s: %w", name, err)
		}
		p.desc = desc
		return nil
	case ext == ".mf" && p.manifest == nil:
		m, err := ovf.ParseManifest(r)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", name, err)
		}
		p.manifest = m
		return nil
	case ext == ".cert":
		_, err := io.Copy(io.Discard, io.LimitReader(r, ovf.MaxManifestBytes))
		return err
	}
	f, ok := p.file(name)
	if !ok {
		return fmt.Errorf("%w: the OVA holds %s, which its descriptor does not reference", errPackage, name)
	}
	return p.write(f, r, h, limit)
}

// file is the descriptor's File of a name.
func (p *ovaPackage) file(name string) (ovf.File, bool) {
	for _, f := range p.desc.Files {
		if f.Href == name {
			return f, true
		}
	}
	return ovf.File{}, false
}

// write copies a referenced file into the root, decompressed when the
// descriptor says gzip, within what a disk of the limit may need; h has
// hashed (and counted) the bytes as packed.
func (p *ovaPackage) write(f ovf.File, r io.Reader, h *ovf.Hasher, limit int64) error {
	if f.Compression == "gzip" {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%w: %s: ovf:compression is gzip but: %v", errPackage, f.Href, err)
		}
		r = gz
	}
	out, err := p.root.OpenFile(f.Href, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	allow := inputAllowance(limit)
	n, err := io.Copy(out, io.LimitReader(r, allow+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", f.Href, err)
	case n > allow:
		return fmt.Errorf("%w: %s is larger than %d bytes, more than a disk of at most %s needs", errPackage, f.Href, allow, inspect.HumanBytes(uint64(limit)))
	case f.Size >= 0 && h.Len() != f.Size:
		return fmt.Errorf("%w: %s has %d bytes, but the descriptor's ovf:size says %d", errPackage, f.Href, h.Len(), f.Size)
	}
	return nil
}

// checkDisks inspects each disk's header: a disk format, a virtual size
// within the limit and the descriptor's capacity. The import of each disk
// inspects it again, fully, and converts it.
func (p *ovaPackage) checkDisks(limit int64) ([]schemas.OvaDisk, error) {
	out := make([]schemas.OvaDisk, len(p.desc.Disks))
	for i, d := range p.desc.Disks {
		rep, err := inspect.InspectFile(filepath.Join(p.dir, d.File.Href), inspect.Limits{MaxVirtualSize: limit})
		if err != nil {
			return nil, fmt.Errorf("disk %s (%s): %w", d.ID, d.File.Href, err)
		}
		if rep.VirtualSize > d.Capacity {
			return nil, fmt.Errorf("%w: disk %s (%s) declares a virtual size of %d bytes, more than the descriptor's capacity of %d",
				errPackage, d.ID, d.File.Href, rep.VirtualSize, d.Capacity)
		}
		out[i] = schemas.OvaDisk{Capacity: d.Capacity, Format: schemas.DiskFormat(rep.Format), VirtualSize: rep.VirtualSize}
	}
	return out, nil
}

// stageDisks uploads each disk to its staging key; on failure it deletes
// what it staged.
func (s *Service) stageDisks(ctx context.Context, j *job, cmd schemas.ConverterOvaUnpack, pkg *ovaPackage, disks []schemas.OvaDisk) (err error) {
	var staged []string
	defer func() {
		if err != nil {
			for _, u := range staged {
				if _, derr := s.store.DeleteIfOwned(context.WithoutCancel(ctx), u, j.ID); derr != nil {
					s.log.Warn("staged OVA disk not removed", "url", u, "err", derr)
				}
			}
		}
	}()
	for i, d := range pkg.desc.Disks {
		u := blob.OVADisk(cmd.Staging, i)
		staged = append(staged, u)
		path := filepath.Join(pkg.dir, d.File.Href)
		if _, err := s.upload(ctx, j, path, u); err != nil {
			return fmt.Errorf("stage disk %s: %w", d.ID, err)
		}
		os.Remove(path)
		disks[i].Staged = u
	}
	return nil
}

// clip cuts s to at most n bytes of valid text without control
// characters, for the event's fields.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	for len(s) > n {
		s = s[:len(s)-1]
		s = strings.ToValidUTF8(s, "")
	}
	return s
}
