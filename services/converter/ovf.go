package converter

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/ovf"
	"github.com/slipway/slipway/schemas"
)

// A loose OVF package: the source names the descriptor (…/name.ovf) and
// its files lie beside it, at the same http(s):// base or under the same
// s3:// prefix. Each file the descriptor references is fetched from there
// (its href is a plain file name, ovf.CheckName, so the URL stays in that
// directory), and so is the manifest name.mf, when there is one. The
// command's checksums are the descriptor's.

// isOVFSource reports whether a source names a descriptor (its path ends
// in .ovf) rather than an OVA.
func isOVFSource(src string) bool {
	u, err := url.Parse(src)
	return err == nil && strings.HasSuffix(strings.ToLower(u.Path), ".ovf")
}

// siblingURL is the URL of the file name next to the descriptor at src:
// same scheme, host (or bucket) and directory, no query or fragment.
func siblingURL(src, name string) (string, error) {
	if err := ovf.CheckName(name); err != nil {
		return "", fmt.Errorf("%w: %v", errPackage, err)
	}
	u, err := url.Parse(src)
	if err != nil {
		return "", fmt.Errorf("%w: source: %v", errInvalid, err)
	}
	u.Path = path.Join(path.Dir(u.Path), name)
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String(), nil
}

// readOVF reads the descriptor at cmd.Source, then every file it
// references and the manifest beside it, into pkg.
func (s *Service) readOVF(ctx context.Context, j *job, cmd schemas.ConverterOvaUnpack, dir string, pkg *ovaPackage, limit int64) error {
	u, _ := url.Parse(cmd.Source)
	name := path.Base(u.Path)
	if err := ovf.CheckName(name); err != nil {
		return failed(schemas.ConverterPhaseFetch, fmt.Errorf("%w: descriptor: %v", errPackage, err))
	}
	sums := append([]string{cmd.Checksum}, cmd.Checksums...)
	if err := s.readFile(ctx, j, dir, pkg, cmd.Source, name, ovf.DefaultMaxBytes+1, sums, limit); err != nil {
		return err
	}
	for _, f := range pkg.desc.Files {
		src, err := siblingURL(cmd.Source, f.Href)
		if err != nil {
			return failed(schemas.ConverterPhaseInspect, err)
		}
		if err := s.readFile(ctx, j, dir, pkg, src, f.Href, inputAllowance(limit)+1, nil, limit); err != nil {
			return err
		}
	}
	mf := strings.TrimSuffix(name, path.Ext(name)) + ".mf"
	src, err := siblingURL(cmd.Source, mf)
	if err != nil {
		return failed(schemas.ConverterPhaseInspect, err)
	}
	err = s.readFile(ctx, j, dir, pkg, src, mf, ovf.MaxManifestBytes+1, nil, limit)
	if err != nil && bus.CodeOf(err) == schemas.CodeSourceNotFound {
		return nil // no manifest: nothing to verify
	}
	return err
}

// readFile fetches src, the package's file name, into pkg, as an OVA's
// entry of that name is read; a file of a descriptor is read as packed.
func (s *Service) readFile(ctx context.Context, j *job, dir string, pkg *ovaPackage, src, name string, maxBytes int64, sums []string, limit int64) error {
	if _, dup := pkg.sums[name]; dup {
		return failed(schemas.ConverterPhaseInspect, fmt.Errorf("%w: the descriptor references %s twice", errPackage, name))
	}
	st, err := fetch.Open(ctx, src, s.fetchOptions(j, dir, maxBytes, sums, true))
	if err != nil {
		return failed(schemas.ConverterPhaseFetch, err)
	}
	defer st.Close()
	if err := pkg.entry(name, st, limit); err != nil {
		if serr := st.Err(); serr != nil {
			return failed(schemas.ConverterPhaseFetch, serr)
		}
		return failed(schemas.ConverterPhaseInspect, err)
	}
	if err := st.Verify(); err != nil {
		return failed(schemas.ConverterPhaseFetch, err)
	}
	return nil
}
