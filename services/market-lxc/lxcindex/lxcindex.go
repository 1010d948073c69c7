// Package lxcindex reads the LXC download index that lxc-create's download
// template uses: meta/1.0/index-system, one image a line,
//
//	dist;release;arch;variant;build;path
//
// where path is the build's directory under the endpoint, holding
// rootfs.tar.xz and meta.tar.xz.
//
// The index carries no checksums. lxc-download verifies the index and each
// file with a detached GPG signature beside it (<file>.asc);
// images.linuxcontainers.org (lxc-ci's jenkins-import-images) also writes a
// SHA256SUMS, and its SHA256SUMS.asc, into every build directory. Fetch
// reads SHA256SUMS, checking SHA256SUMS.asc first when a keyring is
// configured; an Entry without a SHA256 must not be imported unless the
// service verifies SignatureURL with a keyring (pgpverify.Keyring.Detached)
// while downloading.
package lxcindex

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/slipway/slipway/services/market-lxc/indexfile"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
	"github.com/slipway/slipway/services/market-lxc/simplestreams"
)

// Files and caps.
const (
	IndexPath  = "meta/1.0/index-system"
	RootfsFile = "rootfs.tar.xz"
	SumsFile   = "SHA256SUMS"
	// MaxIndex caps index-system; the real one is about 60 kB.
	MaxIndex = 8 << 20
	// MaxSums caps a SHA256SUMS file: a handful of lines.
	MaxSums = 64 << 10
	// MaxLine caps one index line.
	MaxLine = 4096
)

// Options select the images of a listing.
type Options struct {
	Variant string   // "" keeps simplestreams.DefaultVariant
	Arches  []string // kept architectures, any spelling simplestreams.Arch maps; empty keeps all
	// NoSums skips fetching each build's SHA256SUMS (one request per kept
	// image); every entry is then unverified.
	NoSums bool
	// Keyring, when set, makes Fetch verify the index against its detached
	// signature (index-system.asc: a missing or bad one fails the listing)
	// and each SHA256SUMS against SHA256SUMS.asc before trusting a sum (a
	// build whose signature is missing or bad is Skipped).
	Keyring *pgpverify.Keyring
}

// Entry is the newest build of one dist/release/arch/variant.
type Entry struct {
	Name         string // simplestreams.Name(dist, release, arch, variant)
	Dist         string
	Release      string
	Arch         string
	Variant      string
	Build        string // e.g. "20261205_05:24"
	Dir          string // the build directory's URL, ending in "/"
	URL          string // Dir + "rootfs.tar.xz"
	SignatureURL string // URL + ".asc", the detached signature lxc-download checks
	SHA256       string // from the build's SHA256SUMS; "" when the server has none
	// Unverified says why SHA256 is empty; the service must refuse the
	// import unless it checks SignatureURL instead.
	Unverified string
}

// Skipped is a line or image left out and why.
type Skipped struct {
	Line   int    // 1-based index line, 0 for a SHA256SUMS problem
	Name   string // the image's name when known
	Reason string
}

// Listing is what the index offers.
type Listing struct {
	Entries []Entry // sorted by Name
	Skipped []Skipped
}

// Fetch reads endpoint's index-system and, unless opt.NoSums, each kept
// build's SHA256SUMS.
func Fetch(ctx context.Context, client *http.Client, endpoint string, opt Options) (*Listing, error) {
	base, data, err := indexfile.GetUnder(ctx, client, endpoint, IndexPath, MaxIndex, nil)
	if err != nil {
		return nil, err
	}
	if opt.Keyring != nil {
		indexURL, err := indexfile.Resolve(base, IndexPath)
		if err != nil {
			return nil, err
		}
		if err := indexfile.CheckDetached(ctx, client, opt.Keyring, indexURL, data, MaxSums); err != nil {
			return nil, err
		}
	}
	l, err := Parse(data, base, opt)
	if err != nil {
		return nil, err
	}
	if opt.NoSums {
		return l, nil
	}
	errs := fetchSums(ctx, client, opt.Keyring, l.Entries)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	kept := l.Entries[:0]
	for i, e := range l.Entries {
		if errs[i] != nil {
			l.Skipped = append(l.Skipped, Skipped{Name: e.Name, Reason: errs[i].Error()})
			continue
		}
		kept = append(kept, e)
	}
	l.Entries = kept
	return l, nil
}

// sumFetches is how many builds' SHA256SUMS are fetched at once: a
// listing of a few hundred images is a few hundred small requests.
const sumFetches = 8

// fetchSums runs fetchSum for every entry, sumFetches at a time, and
// returns each one's error.
func fetchSums(ctx context.Context, client *http.Client, keyring *pgpverify.Keyring, entries []Entry) []error {
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	sem := make(chan struct{}, sumFetches)
	for i := range entries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fetchSum(ctx, client, keyring, &entries[i])
		}()
	}
	wg.Wait()
	return errs
}

// fetchSum fills e.SHA256 from the build's SHA256SUMS, verified against
// keyring when there is one. A missing file (404) leaves the entry
// unverified; a bad signature, or a file that does not parse or does not
// name rootfs.tar.xz, is an error.
func fetchSum(ctx context.Context, client *http.Client, keyring *pgpverify.Keyring, e *Entry) error {
	sumsURL := e.Dir + SumsFile
	data, err := indexfile.Get(ctx, client, sumsURL, MaxSums, nil)
	var se *indexfile.StatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound {
		e.Unverified = "the server publishes no " + SumsFile + " for this build"
		return nil
	}
	if err != nil {
		return err
	}
	if keyring != nil {
		if err := indexfile.CheckDetached(ctx, client, keyring, sumsURL, data, MaxSums); err != nil {
			return err
		}
	}
	sums, err := ParseSums(data, sumsURL)
	if err != nil {
		return err
	}
	sum, ok := sums[RootfsFile]
	if !ok {
		return indexfile.Errorf(sumsURL, RootfsFile, "not listed")
	}
	e.SHA256, e.Unverified = sum, ""
	return nil
}

// Parse reads an index-system file. Malformed lines are Skipped with their
// number; of several builds of one image the newest (by sorted build key)
// is kept.
func Parse(data []byte, base *url.URL, opt Options) (*Listing, error) {
	if opt.Variant == "" {
		opt.Variant = simplestreams.DefaultVariant
	}
	l := &Listing{}
	newest := map[string]Entry{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), MaxLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		e, err := parseLine(line, base)
		if err != nil {
			l.Skipped = append(l.Skipped, Skipped{Line: n, Name: e.Name, Reason: err.Error()})
			continue
		}
		if e.Variant != opt.Variant || !simplestreams.ArchWanted(e.Arch, opt.Arches) {
			continue
		}
		if old, ok := newest[e.Name]; !ok || old.Build < e.Build {
			newest[e.Name] = e
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &indexfile.Error{File: IndexPath, Err: err}
	}
	for _, e := range newest {
		l.Entries = append(l.Entries, e)
	}
	sort.Slice(l.Entries, func(i, j int) bool { return l.Entries[i].Name < l.Entries[j].Name })
	return l, nil
}

func parseLine(line string, base *url.URL) (Entry, error) {
	f := strings.Split(line, ";")
	if len(f) != 6 {
		return Entry{}, fmt.Errorf("%d fields, want 6 (dist;release;arch;variant;build;path)", len(f))
	}
	e := Entry{Dist: f[0], Release: f[1], Arch: f[2], Variant: f[3], Build: f[4]}
	name, err := simplestreams.Name(e.Dist, e.Release, e.Arch, e.Variant)
	if err != nil {
		return e, err
	}
	e.Name = name
	if err := checkBuild(e.Build); err != nil {
		return e, err
	}
	dir, err := indexfile.Resolve(base, strings.TrimSuffix(f[5], "/"))
	if err != nil {
		return e, err
	}
	e.Dir = dir + "/"
	e.URL = e.Dir + RootfsFile
	e.SignatureURL = e.URL + ".asc"
	e.Unverified = "SHA256SUMS not fetched"
	return e, nil
}

func checkBuild(b string) error {
	if b == "" || len(b) > 64 {
		return fmt.Errorf("build %q: empty or too long", indexfile.Short(b))
	}
	for _, r := range b {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("_:.-", r)) {
			return fmt.Errorf("build %q: character %q not allowed", indexfile.Short(b), r)
		}
	}
	return nil
}

// ParseSums reads a sha256sum(1) file ("<hex>  <name>" or "<hex> *<name>"
// lines) named file in errors. Every non-empty line must parse; a name
// listed twice with different sums is an error.
func ParseSums(data []byte, file string) (map[string]string, error) {
	sums := map[string]string{}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		sum, name, ok := indexfile.SumLine(line, 32)
		if !ok {
			return nil, indexfile.Errorf(file, fmt.Sprintf("line %d", n+1), "not a \"<sha256>  <file>\" line")
		}
		if old, dup := sums[name]; dup && old != sum {
			return nil, indexfile.Errorf(file, fmt.Sprintf("line %d", n+1), "%s listed twice with different sums", name)
		}
		sums[name] = sum
	}
	return sums, nil
}
