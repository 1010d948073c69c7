package marketlxc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/aplinfo"
	"github.com/slipway/slipway/services/market-lxc/indexfile"
)

// turnkeyDriver lists TurnKey Linux's Proxmox appliance index (MAD
// turnkeylinux): aplinfo.dat at the endpoint, the lxc appliances of the
// marketplace's architecture. An appliance is listed only with the sums
// of its .hash document, whose clearsignature the configured keyring
// verified; an import builds its tarball into a disk with both enforced.
type turnkeyDriver struct {
	s    *Service
	sums *sumCache
}

// turnkeyPublisher is the PUBLISHER of the apps.
const turnkeyPublisher = "TurnKey Linux"

// errNoKeyring fails a listing without a keyring: TurnKey's sums are
// trusted only from a .hash whose signature was checked.
var errNoKeyring = errors.New("no keyring to verify TurnKey's signed .hash files: set " + EnvTurnKeyKeyring +
	" to a file of TurnKey's armored public keys (nothing is listed unverified)")

func newTurnKeyDriver(s *Service) market.Driver {
	return turnkeyDriver{s: s, sums: &sumCache{m: map[string]aplinfo.Sums{}}}
}

func (d turnkeyDriver) Validate(mk *market.Market) error {
	if mk.Endpoint == "" {
		mk.Endpoint = DefaultTurnKeyEndpoint
	}
	if len(mk.Arches) > 1 {
		return fmt.Errorf("a turnkeylinux marketplace lists one architecture, not %d (%v): its app names carry none", len(mk.Arches), mk.Arches)
	}
	if mk.Variant != "" || mk.Ftype != "" {
		return errors.New("a turnkeylinux marketplace has no variant or FTYPE")
	}
	_, err := indexFile(mk.Endpoint)
	return err
}

// indexFile is the URL of the marketplace's aplinfo.dat.
func indexFile(endpoint string) (string, error) {
	base, err := indexfile.Base(endpoint)
	if err != nil {
		return "", err
	}
	return indexfile.Resolve(base, aplinfo.IndexFile)
}

func (d turnkeyDriver) List(ctx context.Context, mk market.Market) ([]market.App, error) {
	keyring := d.s.cfg.TurnKeyKeyring
	if keyring == nil {
		return nil, errNoKeyring
	}
	index, err := indexFile(mk.Endpoint)
	if err != nil {
		return nil, err
	}
	l, err := aplinfo.Fetch(ctx, d.s.client, index, aplinfo.Options{Arch: arches(mk)[0]})
	if err != nil {
		return nil, err
	}
	var skip skipped
	for _, s := range l.Skipped {
		skip.add(s.Package, s.Reason)
	}
	apps := make([]market.App, 0, len(l.Entries))
	for _, e := range l.Entries {
		sums, err := d.verifiedSums(ctx, e)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			skip.add(e.Name, err.Error())
			continue
		}
		apps = append(apps, turnkeyApp(e, sums))
	}
	return skip.done(d.s, mk, aplinfo.IndexFile, apps)
}

// verifiedSums are the sums of e's tarball from its verified .hash: from
// the cache when that file was verified before and the index's sha512
// still agrees (a released file's hash does not change), else fetched.
func (d turnkeyDriver) verifiedSums(ctx context.Context, e aplinfo.Entry) (aplinfo.Sums, error) {
	if sums, ok := d.sums.get(e.FileName); ok && (e.Record.SHA512 == "" || e.Record.SHA512 == sums.SHA512) {
		return sums, nil
	}
	sums, err := aplinfo.FetchHash(ctx, d.s.client, d.s.cfg.TurnKeyKeyring, e)
	if err != nil {
		return sums, err
	}
	d.sums.put(e.FileName, sums)
	return sums, nil
}

// turnkeyApp is the app of one appliance: its whole name
// (domain-controller), VERSION <version>-<revision>, and the tarball with
// the sha256 and sha512 its signed .hash gives.
func turnkeyApp(e aplinfo.Entry, sums aplinfo.Sums) market.App {
	f := e.File
	desc := e.Record.Headline
	if desc == "" {
		desc = "TurnKey " + f.App
	}
	return market.App{Name: e.Name, Version: f.Version + "-" + f.Revision, Publisher: turnkeyPublisher,
		Description: desc, Format: "tar.gz", Kind: schemas.MarketAppKindRootfs, Source: e.URL,
		Checksums: []string{"sha512:" + sums.SHA512, "sha256:" + sums.SHA256},
		Arch:      f.Arch, OS: "debian", Release: strconv.Itoa(f.Debian)}
}

func (d turnkeyDriver) ImageCreate(_ market.Market, app market.App, req market.AppImport) (schemas.ImageCreate, error) {
	return rootfsImage(app, req)
}

// maxCachedSums bounds the cache of verified sums: TurnKey has about a
// hundred appliances; a cache grown past this (years of releases) starts
// over.
const maxCachedSums = 4096

// sumCache keeps the verified sums of TurnKey files by file name, shared
// by the turnkeylinux marketplaces: the name is in the signed text, so
// sums verified once hold for that file wherever it is served.
type sumCache struct {
	mu sync.Mutex
	m  map[string]aplinfo.Sums
}

func (c *sumCache) get(file string) (aplinfo.Sums, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[file]
	return s, ok
}

func (c *sumCache) put(file string, s aplinfo.Sums) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedSums {
		clear(c.m)
	}
	c.m[file] = s
}
