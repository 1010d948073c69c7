package marketlxc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/indexfile"
	"github.com/slipway/slipway/services/market-lxc/lxcindex"
	"github.com/slipway/slipway/services/market-lxc/simplestreams"
)

// lxcDriver lists a Linux Containers image server (MAD linuxcontainers):
// its simplestreams index, or, on a server without one (404 on
// streams/v1/index.json), the LXC download index. One app per product —
// os, release, arch and variant — whose newest build's root.tar.xz an
// import builds into a disk, its sha256 enforced.
type lxcDriver struct{ s *Service }

// lxcPublisher is the PUBLISHER of the apps, as OpenNebula's driver says.
const lxcPublisher = "linuxcontainers.org"

func (d lxcDriver) Validate(mk *market.Market) error {
	if mk.Endpoint == "" {
		mk.Endpoint = DefaultLXCEndpoint
	}
	if mk.Variant == "" {
		mk.Variant = simplestreams.DefaultVariant
	}
	if len(mk.Arches) == 0 {
		mk.Arches = arches(*mk)
	}
	_, err := indexfile.Base(mk.Endpoint)
	return err
}

// diskKVM reports whether mk imports each build's disk-kvm.img (FTYPE)
// rather than its root.tar.xz.
func diskKVM(mk market.Market) bool { return mk.Ftype == schemas.MarketFileTypeDiskKvmImg }

func (d lxcDriver) List(ctx context.Context, mk market.Market) ([]market.App, error) {
	opt := simplestreams.Options{Variant: mk.Variant, Arches: arches(mk), File: string(mk.Ftype)}
	l, err := simplestreams.Fetch(ctx, d.s.client, mk.Endpoint, opt)
	var se *indexfile.StatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound && strings.HasSuffix(se.URL, simplestreams.IndexPath) {
		if diskKVM(mk) {
			return nil, fmt.Errorf("FTYPE %s needs a simplestreams index: %w", mk.Ftype, err)
		}
		return d.listDownloadIndex(ctx, mk)
	}
	if err != nil {
		return nil, err
	}
	var skip skipped
	for _, s := range l.Skipped {
		skip.add(s.Product, s.Reason)
	}
	apps := make([]market.App, 0, len(l.Entries))
	for _, e := range l.Entries {
		app := lxcApp(e.Name, e.OS, e.Release, e.Arch, e.Variant, e.Version, e.URL, e.SHA256, e.Size, e.Aliases)
		if e.FileType == simplestreams.DiskKVM {
			app.Kind, app.Format = schemas.MarketAppKindDisk, "qcow2"
		}
		apps = append(apps, app)
	}
	return skip.done(d.s, mk, simplestreams.IndexPath, apps)
}

// listDownloadIndex lists the LXC download index (meta/1.0/index-system).
// An entry without a sha256 from its build's SHA256SUMS is not listed:
// Slipway imports nothing it cannot verify. With a keyring (EnvLXCKeyring)
// the index and each SHA256SUMS must carry a good detached signature.
func (d lxcDriver) listDownloadIndex(ctx context.Context, mk market.Market) ([]market.App, error) {
	l, err := lxcindex.Fetch(ctx, d.s.client, mk.Endpoint, lxcindex.Options{Variant: mk.Variant, Arches: arches(mk), Keyring: d.s.cfg.LXCKeyring})
	if err != nil {
		return nil, fmt.Errorf("no %s (404), and the LXC download index: %w", simplestreams.IndexPath, err)
	}
	var skip skipped
	for _, s := range l.Skipped {
		skip.add(s.Name, s.Reason)
	}
	apps := make([]market.App, 0, len(l.Entries))
	for _, e := range l.Entries {
		if e.SHA256 == "" {
			skip.add(e.Name, "no verified sha256: "+e.Unverified)
			continue
		}
		apps = append(apps, lxcApp(e.Name, e.Dist, e.Release, e.Arch, e.Variant, e.Build, e.URL, e.SHA256, 0, nil))
	}
	return skip.done(d.s, mk, lxcindex.IndexPath, apps)
}

// lxcApp is the app of one product's newest build: OpenNebula's attributes
// (NAME, VERSION = the build key, PUBLISHER, DESCRIPTION, SIZE, FORMAT,
// TAGS) and the rootfs to import with its sha256.
func lxcApp(name, os, release, arch, variant, build, src, sha256 string, size int64, aliases []string) market.App {
	return market.App{Name: name, Version: build, Publisher: lxcPublisher,
		Description: fmt.Sprintf("%s %s %s (%s)", os, release, arch, variant),
		Size:        size, Format: "tar.xz", Tags: aliasTags(aliases), Kind: schemas.MarketAppKindRootfs,
		Source: src, Checksums: []string{"sha256:" + sha256}, LastUpdated: build,
		Arch: arch, OS: os, Release: release, Variant: variant}
}

// ImageCreate builds a rootfs app into a disk; a disk-kvm.img app (FTYPE)
// is imported as it is through the converter, its sha256 enforced.
func (d lxcDriver) ImageCreate(_ market.Market, app market.App, req market.AppImport) (schemas.ImageCreate, error) {
	if app.Kind != schemas.MarketAppKindDisk {
		return rootfsImage(app, req)
	}
	src, err := verifiedSource(app)
	if err != nil {
		return schemas.ImageCreate{}, err
	}
	return schemas.ImageCreate{Type: schemas.ImageTypeOS, Path: src, Checksums: app.Checksums, Format: req.Format}, nil
}

// aliasTags are a product's aliases as TAGS: "debian/bookworm/default"
// becomes "debian-bookworm-default" (a tag has no "/").
func aliasTags(aliases []string) []string {
	tags := make([]string, len(aliases))
	for i, a := range aliases {
		tags[i] = strings.ReplaceAll(a, "/", "-")
	}
	return imageTags(tags)
}
