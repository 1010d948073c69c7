// Package simplestreams reads a Linux Containers image server the way Incus
// does: streams/v1/index.json names the products:1.0 file
// (streams/v1/images.json), whose products carry arch, os, release and
// variant fields and versions keyed by build date; each version has items
// by file type (root.tar.xz, incus.tar.xz/lxd.tar.xz, squashfs,
// disk-kvm.img) with a sha256, a size and a path under the endpoint.
//
// The result is one Entry per product for the configured variant and arches:
// the newest build (version keys sorted; maps have no order) that has the
// wanted file, with the file's URL resolved under the endpoint and its
// sha256. A product whose file has no usable sha256 or path is Skipped with
// the reason, never offered for an unverified import.
package simplestreams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/slipway/slipway/services/market-lxc/indexfile"
)

// File types an Entry can point at.
const (
	RootTarXz = "root.tar.xz"  // the rootfs tarball (the default)
	DiskKVM   = "disk-kvm.img" // a bootable qcow2 disk
)

// Files and caps.
const (
	IndexPath = "streams/v1/index.json"
	// MaxIndex caps index.json; the real one is a few kB.
	MaxIndex = 1 << 20
	// MaxProducts caps images.json; images.linuxcontainers.org's is about
	// 10 MB.
	MaxProducts = 128 << 20
	// DefaultVariant is kept unless the marketplace says otherwise.
	DefaultVariant = "default"
)

// Options select the products of a listing.
type Options struct {
	Variant string   // "" means DefaultVariant
	Arches  []string // architectures kept, in Go, Debian or kernel spelling; empty keeps all
	File    string   // RootTarXz (when "") or DiskKVM
}

// Entry is one product's newest build with the file to import.
type Entry struct {
	Name         string   // stable app name, Name(os, release, arch, variant)
	Product      string   // the product key as the server spells it
	OS           string   // "Debian"
	Release      string   // "bookworm"
	ReleaseTitle string   // "12" (may be empty)
	Arch         string   // as the server spells it: "amd64"
	Variant      string   // "default"
	Aliases      []string // from the comma-separated aliases field
	Version      string   // the build key, e.g. "20241205_05:24"
	FileType     string   // RootTarXz or DiskKVM
	URL          string   // the file, resolved under the endpoint
	Size         int64    // bytes of the file
	SHA256       string   // lower-case hex of the file
	// CombinedSHA256 is the metadata item's combined_*_sha256 for this file
	// type (the Incus fingerprint), empty when the server has none.
	CombinedSHA256 string
}

// Skipped is a product left out of a listing and why.
type Skipped struct {
	Product string
	Version string // empty when no version was chosen
	Reason  string
}

// Listing is what a products file offers.
type Listing struct {
	Entries []Entry // sorted by Name
	Skipped []Skipped
}

// Fetch reads endpoint's index.json and its products:1.0 file with client
// and returns the listing. Errors name the file and the field.
func Fetch(ctx context.Context, client *http.Client, endpoint string, opt Options) (*Listing, error) {
	base, data, err := indexfile.GetUnder(ctx, client, endpoint, IndexPath, MaxIndex, nil)
	if err != nil {
		return nil, err
	}
	path, err := ParseIndex(data)
	if err != nil {
		return nil, err
	}
	productsURL, err := indexfile.Resolve(base, path)
	if err != nil {
		return nil, indexfile.Errorf(IndexPath, "path", "%v", err)
	}
	data, err = indexfile.Get(ctx, client, productsURL, MaxProducts, nil)
	if err != nil {
		return nil, err
	}
	return ParseProducts(data, path, base, opt)
}

type stream struct {
	Format string                 `json:"format"`
	Index  map[string]streamIndex `json:"index"`
}

type streamIndex struct {
	DataType string `json:"datatype"`
	Path     string `json:"path"`
	Format   string `json:"format"`
}

// ParseIndex returns the path of the products:1.0 image-downloads file that
// index.json names. When several do, the first by key is used.
func ParseIndex(data []byte) (string, error) {
	var s stream
	if err := json.Unmarshal(data, &s); err != nil {
		return "", &indexfile.Error{File: IndexPath, Err: indexfile.JSONError(err)}
	}
	if s.Format != "index:1.0" {
		return "", indexfile.Errorf(IndexPath, "format", "%q, want index:1.0", indexfile.Short(s.Format))
	}
	keys := sortedKeys(s.Index)
	for _, k := range keys {
		ix := s.Index[k]
		if ix.DataType == "image-downloads" && (ix.Format == "" || ix.Format == "products:1.0") {
			if ix.Path == "" {
				return "", indexfile.Errorf(IndexPath, fmt.Sprintf("index[%q].path", k), "empty")
			}
			return ix.Path, nil
		}
	}
	return "", indexfile.Errorf(IndexPath, "index", "no image-downloads products:1.0 entry among %d", len(keys))
}

type products struct {
	Format   string                     `json:"format"`
	Products map[string]json.RawMessage `json:"products"`
}

type product struct {
	Arch         string                     `json:"arch"`
	OS           string                     `json:"os"`
	Release      string                     `json:"release"`
	ReleaseTitle string                     `json:"release_title"`
	Variant      string                     `json:"variant"`
	Aliases      string                     `json:"aliases"`
	Versions     map[string]json.RawMessage `json:"versions"`
}

type version struct {
	Items map[string]item `json:"items"`
}

type item struct {
	FileType string `json:"ftype"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	Path     string `json:"path"`

	CombinedRootXz   string `json:"combined_rootxz_sha256"`
	CombinedDiskKVM  string `json:"combined_disk-kvm-img_sha256"`
	CombinedSquashfs string `json:"combined_squashfs_sha256"`
	Combined         string `json:"combined_sha256"`
}

// ParseProducts reads a products:1.0 file (named file in errors) and keeps
// the products opt selects. A product that does not decode is Skipped; only
// a file that is not a products:1.0 document is an error.
func ParseProducts(data []byte, file string, base *url.URL, opt Options) (*Listing, error) {
	opt = opt.withDefaults()
	if opt.File != RootTarXz && opt.File != DiskKVM {
		return nil, fmt.Errorf("simplestreams: file type %q: want %s or %s", opt.File, RootTarXz, DiskKVM)
	}
	var ps products
	if err := json.Unmarshal(data, &ps); err != nil {
		return nil, &indexfile.Error{File: file, Err: indexfile.JSONError(err)}
	}
	if ps.Format != "products:1.0" {
		return nil, indexfile.Errorf(file, "format", "%q, want products:1.0", indexfile.Short(ps.Format))
	}
	l := &Listing{}
	seen := map[string]string{}
	for _, key := range sortedKeys(ps.Products) {
		e, skip, keep := readProduct(key, ps.Products[key], base, opt)
		switch {
		case skip != nil:
			l.Skipped = append(l.Skipped, *skip)
		case !keep:
		case seen[e.Name] != "":
			l.Skipped = append(l.Skipped, Skipped{Product: key, Version: e.Version,
				Reason: fmt.Sprintf("name %q already taken by product %q", e.Name, seen[e.Name])})
		default:
			seen[e.Name] = key
			l.Entries = append(l.Entries, e)
		}
	}
	sort.Slice(l.Entries, func(i, j int) bool { return l.Entries[i].Name < l.Entries[j].Name })
	return l, nil
}

func (o Options) withDefaults() Options {
	if o.Variant == "" {
		o.Variant = DefaultVariant
	}
	if o.File == "" {
		o.File = RootTarXz
	}
	return o
}

// readProduct returns the product's entry, or why it is skipped, or keep
// false when the options filter it out.
func readProduct(key string, raw json.RawMessage, base *url.URL, opt Options) (Entry, *Skipped, bool) {
	skip := func(ver, format string, args ...any) (Entry, *Skipped, bool) {
		return Entry{}, &Skipped{Product: key, Version: ver, Reason: fmt.Sprintf(format, args...)}, false
	}
	var p product
	if err := json.Unmarshal(raw, &p); err != nil {
		return skip("", "product does not decode: %v", indexfile.JSONError(err))
	}
	if p.Variant == "" {
		// Servers that publish one variant leave the field out.
		p.Variant = DefaultVariant
	}
	if p.Variant != opt.Variant || !ArchWanted(p.Arch, opt.Arches) {
		return Entry{}, nil, false
	}
	name, err := Name(p.OS, p.Release, p.Arch, p.Variant)
	if err != nil {
		return skip("", "%v", err)
	}
	ver, v, it, found, err := newest(p.Versions, opt.File)
	if err != nil {
		return skip(ver, "%v", err)
	}
	if !found {
		return skip("", "no version has a %s item", opt.File)
	}
	sum, err := indexfile.Hex(it.SHA256, 32)
	if it.SHA256 == "" {
		err = errors.New("no sha256: refusing an unverified import")
	}
	if err != nil {
		return skip(ver, "%s item: sha256: %v", opt.File, err)
	}
	u, err := indexfile.Resolve(base, it.Path)
	if err != nil {
		return skip(ver, "%s item: %v", opt.File, err)
	}
	if it.Size <= 0 {
		return skip(ver, "%s item: size %d", opt.File, it.Size)
	}
	return Entry{
		Name: name, Product: key, OS: p.OS, Release: p.Release, ReleaseTitle: p.ReleaseTitle,
		Arch: p.Arch, Variant: p.Variant, Aliases: splitAliases(p.Aliases), Version: ver,
		FileType: opt.File, URL: u, Size: it.Size, SHA256: sum,
		CombinedSHA256: combined(v, opt.File),
	}, nil, true
}

// newest is the newest version (by sorted key) that has an item of file
// type ftype, that version decoded, and that item.
func newest(versions map[string]json.RawMessage, ftype string) (string, version, item, bool, error) {
	keys := sortedKeys(versions)
	for i := len(keys) - 1; i >= 0; i-- {
		var v version
		if err := json.Unmarshal(versions[keys[i]], &v); err != nil {
			return keys[i], version{}, item{}, false, fmt.Errorf("version does not decode: %v", indexfile.JSONError(err))
		}
		if it, ok := findItem(v.Items, ftype); ok {
			return keys[i], v, it, true, nil
		}
	}
	return "", version{}, item{}, false, nil
}

// findItem is the item of file type ftype; several are taken in key order.
func findItem(items map[string]item, ftype string) (item, bool) {
	for _, k := range sortedKeys(items) {
		if items[k].FileType == ftype {
			return items[k], true
		}
	}
	return item{}, false
}

// combined is the metadata item's combined sha256 for ftype in v (the
// version newest decoded), if valid hex.
func combined(v version, ftype string) string {
	for _, k := range sortedKeys(v.Items) {
		it := v.Items[k]
		if it.FileType != "incus.tar.xz" && it.FileType != "lxd.tar.xz" {
			continue
		}
		sum := it.CombinedRootXz
		if ftype == DiskKVM {
			sum = it.CombinedDiskKVM
		}
		if h, err := indexfile.Hex(sum, 32); err == nil {
			return h
		}
	}
	return ""
}

func splitAliases(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
