package marketlxc

import (
	"fmt"
	"net/url"
	"runtime"
	"strings"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/simplestreams"
)

// What the drivers of the rootfs marketplaces (linuxcontainers,
// turnkeylinux) share: the architectures a marketplace lists, the
// image-create of a rootfs tarball, and the check of an app's source.

// maxSkippedLogged is how many skipped entries a listing's log names; the
// count covers them all.
const maxSkippedLogged = 10

// arches are the architectures a marketplace lists: its own, else the
// host's, in the image servers' spelling.
func arches(mk market.Market) []string {
	if len(mk.Arches) > 0 {
		return mk.Arches
	}
	return []string{simplestreams.Arch(runtime.GOARCH)}
}

// rootfsImage is the catalog's image-create of a rootfs app: the builder
// streams the tarball, enforcing every checksum, into a disk of the
// import's (or the marketplace's) size, filesystem and format.
func rootfsImage(app market.App, req market.AppImport) (schemas.ImageCreate, error) {
	src, err := verifiedSource(app)
	if err != nil {
		return schemas.ImageCreate{}, err
	}
	return schemas.ImageCreate{Type: schemas.ImageTypeOS, Path: src, Rootfs: true, Checksums: app.Checksums,
		SizeMiB: req.SizeMiB, FS: req.Filesystem, Format: req.Format}, nil
}

// verifiedSource is app's source as an image-create path: an http(s) URL
// with a host, no user info, and at least one checksum to enforce. The
// drivers only list such apps; this holds the line at import too.
func verifiedSource(app market.App) (string, error) {
	if len(app.Checksums) == 0 {
		return "", fmt.Errorf("app %s has no checksum: Slipway imports nothing unverified", app.Name)
	}
	u, err := url.Parse(app.Source)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("app %s: source %q is not an http(s) URL", app.Name, app.Source)
	}
	return u.String(), nil
}

// skipped is a listing's note on the entries it left out: how many, and
// the first few with their reasons.
type skipped struct {
	count   int
	reasons []string
}

func (s *skipped) add(name, reason string) {
	s.count++
	if len(s.reasons) < maxSkippedLogged {
		s.reasons = append(s.reasons, name+": "+reason)
	}
}

// done ends a listing of mk from what (an index file): it logs what was
// left out, and a listing that left out every entry fails with the first
// reasons (recorded on the marketplace, whose apps stay).
func (s *skipped) done(svc *Service, mk market.Market, what string, apps []market.App) ([]market.App, error) {
	if s.count == 0 {
		return apps, nil
	}
	svc.log.Warn("listing left entries out: they cannot be verified or do not parse", "market", mk.ID,
		"name", mk.Name, "skipped", s.count, "first", strings.Join(s.reasons, "; "))
	if len(apps) == 0 {
		return nil, fmt.Errorf("%s: every entry was left out (%d): %s", what, s.count, strings.Join(s.reasons, "; "))
	}
	return apps, nil
}
