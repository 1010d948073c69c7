// Package aplinfo reads the Proxmox appliance index aplinfo.dat as TurnKey
// Linux publishes it: paragraph records separated by blank lines,
//
//	Package: turnkey-domain-controller
//	Version: 18.0-1
//	Type: lxc
//	OS: debian-12
//	Section: turnkeylinux
//	Maintainer: ...
//	Architecture: amd64
//	Location: http://mirror.example/images/proxmox/debian-12-turnkey-domain-controller_18.0-1_amd64.tar.gz
//	Infopage: https://www.turnkeylinux.org/domain-controller
//	Description: TurnKey Domain Controller
//	 continuation lines start with a blank
//	sha512sum: <128 hex>
//
// TurnKey writes Location as an absolute URL to its mirror; Proxmox's own
// index writes a path relative to the index. Both are accepted (http and
// https only), and the file name must be
// debian-<N>-turnkey-<app>_<version>-<revision>_<arch>.tar.gz.
//
// The sums are trusted only from <Location>.hash, a clearsigned document
// whose signature is checked against the configured keyring first
// (FetchHash); the index's own sha512sum is a hint compared with it.
package aplinfo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/slipway/slipway/services/market-lxc/indexfile"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
)

// Files and caps.
const (
	IndexFile = "aplinfo.dat"
	// MaxIndex caps aplinfo.dat; TurnKey's is about 150 kB.
	MaxIndex = 16 << 20
	// MaxHash caps a .hash document: about 2 kB.
	MaxHash = 64 << 10
	// MaxLine caps one line of the index.
	MaxLine = 64 << 10
	// MaxFields caps the fields of one record.
	MaxFields = 64
)

// Record is one paragraph of aplinfo.dat. Fields holds every field under its
// lower-cased key (unknown ones too); the named members are the known ones.
type Record struct {
	Line         int // 1-based line of the record's first field
	Package      string
	Version      string
	Type         string
	OS           string
	Section      string
	Maintainer   string
	Architecture string
	Location     string
	Infopage     string
	SHA512       string // the sha512sum field, lower-case hex or ""
	Headline     string // the Description's first line
	Description  string // the continuation lines, joined with "\n"
	Fields       map[string]string
}

// FileName is a parsed TurnKey image file name.
type FileName struct {
	Debian   int    // 12
	App      string // "domain-controller": hyphenated names are kept whole
	Version  string // "18.0"
	Revision string // "1"
	Arch     string // "amd64"
}

// Entry is one lxc appliance ready to be verified and imported.
type Entry struct {
	Name     string // the app, e.g. "domain-controller"
	File     FileName
	FileName string // the tarball's file name
	URL      string // the tarball
	HashURL  string // URL + ".hash"
	Record   Record
}

// Skipped is a record left out and why.
type Skipped struct {
	Line    int
	Package string
	Reason  string
}

// Listing is what the index offers.
type Listing struct {
	Entries []Entry // sorted by Name
	Skipped []Skipped
}

// Options select the appliances of a listing.
type Options struct {
	Arch string // kept architecture; "" means amd64
	// IndexKeyring, when set, makes Fetch verify aplinfo.dat against its
	// detached signature aplinfo.dat.asc first, as pveam does.
	IndexKeyring *pgpverify.Keyring
}

// Fetch reads indexURL (the aplinfo.dat URL) with client.
func Fetch(ctx context.Context, client *http.Client, indexURL string, opt Options) (*Listing, error) {
	u, err := url.Parse(indexURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("aplinfo URL %q: want an http(s) URL without user info", indexURL)
	}
	data, err := indexfile.Get(ctx, client, indexURL, MaxIndex, nil)
	if err != nil {
		return nil, err
	}
	if opt.IndexKeyring != nil {
		if err := indexfile.CheckDetached(ctx, client, opt.IndexKeyring, indexURL, data, MaxHash); err != nil {
			return nil, err
		}
	}
	return Parse(data, u, opt)
}

// Parse reads aplinfo.dat, whose URL is index (relative Locations resolve
// against its directory). Records of another Type or Architecture are left
// out silently; records that do not parse are Skipped. Of several records
// for one app the newest (Debian release, version, revision) is kept.
func Parse(data []byte, index *url.URL, opt Options) (*Listing, error) {
	if opt.Arch == "" {
		opt.Arch = "amd64"
	}
	recs, err := Records(data)
	if err != nil {
		return nil, err
	}
	dir := *index
	dir.Path = dir.Path[:strings.LastIndex(dir.Path, "/")+1]
	dir.RawQuery, dir.Fragment, dir.RawPath = "", "", ""
	l := &Listing{}
	byName := map[string]Entry{}
	for _, r := range recs {
		if r.Type != "lxc" || r.Architecture != opt.Arch {
			continue
		}
		e, err := entry(r, &dir)
		if err != nil {
			l.Skipped = append(l.Skipped, Skipped{Line: r.Line, Package: indexfile.Short(r.Package), Reason: err.Error()})
			continue
		}
		if old, ok := byName[e.Name]; !ok || newer(e.File, old.File) {
			byName[e.Name] = e
		}
	}
	for _, e := range byName {
		l.Entries = append(l.Entries, e)
	}
	sort.Slice(l.Entries, func(i, j int) bool { return l.Entries[i].Name < l.Entries[j].Name })
	return l, nil
}

func entry(r Record, dir *url.URL) (Entry, error) {
	if r.Location == "" {
		return Entry{}, fmt.Errorf("record at line %d: no Location", r.Line)
	}
	u, err := location(r.Location, dir)
	if err != nil {
		return Entry{}, fmt.Errorf("field Location: %v", err)
	}
	name := u[strings.LastIndex(u, "/")+1:]
	fn, err := ParseFileName(name)
	if err != nil {
		return Entry{}, fmt.Errorf("field Location: %v", err)
	}
	if fn.Arch != r.Architecture {
		return Entry{}, fmt.Errorf("the arch %q of field Location differs from field Architecture %q", fn.Arch, r.Architecture)
	}
	if r.Fields["sha512sum"] != "" && r.SHA512 == "" {
		return Entry{}, fmt.Errorf("sha512sum: not 128 hex digits")
	}
	return Entry{Name: fn.App, File: fn, FileName: name, URL: u, HashURL: u + ".hash", Record: r}, nil
}

// location resolves a Location: an absolute http(s) URL without user info,
// query or fragment, or a relative path under dir.
func location(loc string, dir *url.URL) (string, error) {
	if !strings.Contains(loc, "://") {
		return indexfile.Resolve(dir, loc)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("%q: %v", indexfile.Short(loc), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" ||
		u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%q: want an http(s) URL without user info, query or fragment", indexfile.Short(loc))
	}
	host := *u
	host.Path, host.RawPath = "/", ""
	return indexfile.Resolve(&host, u.Path)
}

var fileNameRE = regexp.MustCompile(`^debian-([0-9]{1,3})-turnkey-([a-z0-9]+(?:-[a-z0-9]+)*)_([0-9]+(?:\.[0-9]+)*)-([0-9]+)_([a-z0-9]+)\.tar\.gz$`)

// ParseFileName parses debian-<N>-turnkey-<app>_<version>-<revision>_<arch>.tar.gz.
func ParseFileName(name string) (FileName, error) {
	m := fileNameRE.FindStringSubmatch(name)
	if m == nil {
		return FileName{}, fmt.Errorf("file name %q is not debian-<N>-turnkey-<app>_<version>-<revision>_<arch>.tar.gz", indexfile.Short(name))
	}
	n, _ := strconv.Atoi(m[1])
	return FileName{Debian: n, App: m[2], Version: m[3], Revision: m[4], Arch: m[5]}, nil
}

// newer reports whether a is a newer build than b.
func newer(a, b FileName) bool {
	if a.Debian != b.Debian {
		return a.Debian > b.Debian
	}
	if c := compareDotted(a.Version, b.Version); c != 0 {
		return c > 0
	}
	return compareDotted(a.Revision, b.Revision) > 0
}

// compareDotted compares dotted decimal versions ("18.10" > "18.9").
func compareDotted(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Records splits aplinfo.dat into records. A line that is neither a field,
// a continuation nor blank is an error naming its line.
func Records(data []byte) ([]Record, error) {
	var recs []Record
	var cur *Record
	var last string // the key continuation lines extend
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.TrimSpace(line) == "":
			if cur != nil {
				recs = append(recs, finish(*cur))
			}
			cur, last = nil, ""
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil || last == "" {
				return nil, indexfile.Errorf(IndexFile, fmt.Sprintf("line %d", n), "continuation line outside a field")
			}
			cur.Fields[last] += "\n" + strings.TrimSpace(line)
		default:
			key, val, ok := strings.Cut(line, ":")
			key = strings.ToLower(strings.TrimSpace(key))
			if !ok || key == "" || strings.ContainsAny(key, " \t") {
				return nil, indexfile.Errorf(IndexFile, fmt.Sprintf("line %d", n), "not a \"Field: value\" line")
			}
			if cur == nil {
				cur = &Record{Line: n, Fields: map[string]string{}}
			}
			if _, dup := cur.Fields[key]; dup {
				return nil, indexfile.Errorf(IndexFile, fmt.Sprintf("line %d", n), "field %q repeated in one record", key)
			}
			if len(cur.Fields) >= MaxFields {
				return nil, indexfile.Errorf(IndexFile, fmt.Sprintf("line %d", n), "more than %d fields in one record", MaxFields)
			}
			cur.Fields[key] = strings.TrimSpace(val)
			last = key
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &indexfile.Error{File: IndexFile, Err: err}
	}
	if cur != nil {
		recs = append(recs, finish(*cur))
	}
	return recs, nil
}

func finish(r Record) Record {
	f := r.Fields
	r.Package, r.Version, r.Type, r.OS = f["package"], f["version"], f["type"], f["os"]
	r.Section, r.Maintainer, r.Architecture = f["section"], f["maintainer"], f["architecture"]
	r.Location, r.Infopage = f["location"], f["infopage"]
	r.SHA512, _ = indexfile.Hex(f["sha512sum"], 64)
	r.Headline, r.Description, _ = strings.Cut(f["description"], "\n")
	return r
}

// Sums are the digests a verified .hash document gives for one file.
type Sums struct {
	SHA256 string
	SHA512 string
	Signer string // fingerprint of the key that signed the .hash
}

// FetchHash fetches e.HashURL, verifies its clearsignature against keyring
// and returns the sha256 and sha512 it gives for e.FileName. Every failure is
// an error naming the app: a missing or bad signature, an unknown key, a
// document whose sums do not name the file, or a sha512 that differs from
// the index's.
func FetchHash(ctx context.Context, client *http.Client, keyring *pgpverify.Keyring, e Entry) (Sums, error) {
	doc, err := indexfile.Get(ctx, client, e.HashURL, MaxHash, nil)
	if err != nil {
		return Sums{}, fmt.Errorf("app %s: %w", e.Name, err)
	}
	s, err := VerifyHash(keyring, doc, e.FileName)
	if err != nil {
		return Sums{}, fmt.Errorf("app %s: %s: %w", e.Name, e.HashURL, err)
	}
	if e.Record.SHA512 != "" && e.Record.SHA512 != s.SHA512 {
		return Sums{}, fmt.Errorf("app %s: %s gives sha512 %s but %s says %s", e.Name, e.HashURL, s.SHA512, IndexFile, e.Record.SHA512)
	}
	return s, nil
}

// VerifyHash checks a TurnKey .hash document: its clearsignature first, then
// in the signed text only, the "<sha256>  <file>" and "<sha512>  <file>"
// lines for file. Both sums are required and each must be given once.
func VerifyHash(keyring *pgpverify.Keyring, doc []byte, file string) (Sums, error) {
	text, signer, err := keyring.Clearsigned(doc)
	if err != nil {
		return Sums{}, err
	}
	s := Sums{Signer: signer}
	for _, line := range strings.Split(string(text), "\n") {
		for _, h := range []struct {
			size int
			dst  *string
		}{{32, &s.SHA256}, {64, &s.SHA512}} {
			sum, name, ok := indexfile.SumLine(line, h.size)
			if !ok || name != file {
				continue
			}
			if *h.dst != "" && *h.dst != sum {
				return Sums{}, fmt.Errorf("two different sha%d sums for %s", h.size*8, file)
			}
			*h.dst = sum
		}
	}
	if s.SHA256 == "" || s.SHA512 == "" {
		return Sums{}, fmt.Errorf("the signed text has no sha256 and sha512 lines for %s", file)
	}
	return s, nil
}
