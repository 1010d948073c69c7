// Package oneapp reads OpenNebula's public marketplace the way OpenNebula's
// "one" market driver does: GET <ENDPOINT>/appliance with an "OpenNebula
// X.Y.Z" User-Agent (the server filters appliances by it) returns
//
//	{"sEcho":1,"appliances":[{"_id":{"$oid":"..."},"name":...,"files":[...]}]}
//
// Each appliance is an IMAGE (files[0] is its disk), a VMTEMPLATE (disks
// names the IMAGE apps it uses) or a SERVICE_TEMPLATE (roles maps role names
// to VMTEMPLATE apps); opennebula_template is a JSON document in a string.
// Downloads are GET <ENDPOINT>/appliance/<id>/download/<n>, answered by a
// redirect to the file.
//
// Every checksum an appliance's file carries is kept as "md5:<hex>" and
// "sha256:<hex>" so that the service can enforce all of them.
package oneapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/slipway/slipway/services/market-lxc/indexfile"
)

// Caps and defaults.
const (
	ListPath = "appliance"
	// MaxListing caps the /appliance answer; the public one is about 1 MB.
	MaxListing = 64 << 20
	// MaxTemplate caps one opennebula_template string.
	MaxTemplate = 256 << 10
	// DefaultUserAgent is sent when Options.UserAgent is empty. The server
	// lists the appliances of the OpenNebula version it names.
	DefaultUserAgent = "OpenNebula 6.10.0 (Market Driver)"
)

// Appliance types.
const (
	TypeImage           = "IMAGE"
	TypeVMTemplate      = "VMTEMPLATE"
	TypeServiceTemplate = "SERVICE_TEMPLATE"
)

// Options of a listing.
type Options struct {
	UserAgent string // "" sends DefaultUserAgent
}

// File is one file of an appliance.
type File struct {
	Name      string
	URL       string // the file's own url field, informational: downloads go through Download
	Download  string // <ENDPOINT>/appliance/<id>/download/<n>
	Size      int64  // the virtual size in bytes
	Checksums []string
	DevPrefix string
	Driver    string
	Type      string // OS, CDROM, DATABLOCK...
}

// Entry is one appliance.
type Entry struct {
	ID               string // _id.$oid
	Name             string
	Version          string
	Publisher        string
	Description      string
	ShortDescription string
	Tags             []string
	Format           string
	OSID             string
	OSRelease        string
	OSArch           string
	Hypervisor       string
	Type             string // TypeImage, TypeVMTemplate or TypeServiceTemplate
	RegTime          int64  // creation_time, seconds since the epoch
	// Template is opennebula_template decoded (a JSON object), nil when the
	// appliance has none.
	Template map[string]any
	Files    []File
	Disks    []string          // VMTEMPLATE: the IMAGE apps it uses, by name
	Roles    map[string]string // SERVICE_TEMPLATE: role name → VMTEMPLATE app name
}

// Skipped is an appliance left out and why.
type Skipped struct {
	Index  int // position in the appliances list
	ID     string
	Name   string
	Reason string
}

// Listing is what the marketplace offers.
type Listing struct {
	Entries []Entry // in the server's order
	Skipped []Skipped
}

// Fetch lists endpoint's appliances with client.
func Fetch(ctx context.Context, client *http.Client, endpoint string, opt Options) (*Listing, error) {
	ua := opt.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	base, data, err := indexfile.GetUnder(ctx, client, endpoint, ListPath, MaxListing, http.Header{"User-Agent": {ua}})
	if err != nil {
		return nil, err
	}
	return Parse(data, base)
}

type listing struct {
	Appliances []json.RawMessage `json:"appliances"`
}

type appliance struct {
	ID struct {
		OID string `json:"$oid"`
	} `json:"_id"`
	Name             string            `json:"name"`
	Version          string            `json:"version"`
	Publisher        string            `json:"publisher"`
	Description      string            `json:"description"`
	ShortDescription string            `json:"short_description"`
	Tags             []string          `json:"tags"`
	Format           string            `json:"format"`
	OSID             string            `json:"os-id"`
	OSRelease        string            `json:"os-release"`
	OSArch           string            `json:"os-arch"`
	Hypervisor       string            `json:"hypervisor"`
	Type             string            `json:"type"`
	CreationTime     json.RawMessage   `json:"creation_time"`
	Template         *string           `json:"opennebula_template"`
	Files            []file            `json:"files"`
	Disks            []string          `json:"disks"`
	Roles            map[string]string `json:"roles"`
}

type file struct {
	Name     string          `json:"name"`
	URL      string          `json:"url"`
	Size     json.RawMessage `json:"size"`
	MD5      string          `json:"md5"`
	Checksum struct {
		MD5    string `json:"md5"`
		SHA256 string `json:"sha256"`
	} `json:"checksum"`
	DevPrefix string `json:"dev_prefix"`
	Driver    string `json:"driver"`
	Type      string `json:"type"`
}

// Parse reads an /appliance answer. Appliances that do not decode or carry
// bad values are Skipped; only an answer that is not the listing is an
// error.
func Parse(data []byte, base *url.URL) (*Listing, error) {
	var ls listing
	if err := json.Unmarshal(data, &ls); err != nil {
		return nil, &indexfile.Error{File: ListPath, Err: indexfile.JSONError(err)}
	}
	if ls.Appliances == nil {
		return nil, indexfile.Errorf(ListPath, "appliances", "missing")
	}
	l := &Listing{}
	seen := map[string]bool{}
	for i, raw := range ls.Appliances {
		e, err := readAppliance(raw, base)
		if err == nil && seen[e.ID] {
			err = errors.New("duplicate _id")
		}
		if err != nil {
			l.Skipped = append(l.Skipped, Skipped{Index: i, ID: indexfile.Short(e.ID), Name: indexfile.Short(e.Name),
				Reason: fmt.Sprintf("appliances[%d]: %v", i, err)})
			continue
		}
		seen[e.ID] = true
		l.Entries = append(l.Entries, e)
	}
	return l, nil
}

var oidRE = regexp.MustCompile(`^[0-9a-fA-F]{24}$|^[0-9a-fA-F-]{36}$`)

func readAppliance(raw json.RawMessage, base *url.URL) (Entry, error) {
	var a appliance
	if err := json.Unmarshal(raw, &a); err != nil {
		return Entry{}, indexfile.JSONError(err)
	}
	e := Entry{ID: a.ID.OID, Name: a.Name, Version: a.Version, Publisher: a.Publisher,
		Description: a.Description, ShortDescription: a.ShortDescription, Tags: a.Tags, Format: a.Format,
		OSID: a.OSID, OSRelease: a.OSRelease, OSArch: a.OSArch, Hypervisor: a.Hypervisor, Type: a.Type,
		Disks: a.Disks, Roles: a.Roles}
	if !oidRE.MatchString(e.ID) {
		return e, fmt.Errorf("_id.$oid %q: want 24 hex digits or a UUID", indexfile.Short(e.ID))
	}
	if strings.TrimSpace(e.Name) == "" {
		return e, errors.New("name: empty")
	}
	if e.Type == "" {
		e.Type = TypeImage // as OpenNebula's driver does
	}
	t, err := count(a.CreationTime)
	if err != nil {
		return e, fmt.Errorf("creation_time: %v", err)
	}
	e.RegTime = t
	if a.Template != nil && *a.Template != "" {
		tmpl, err := decodeTemplate(*a.Template)
		if err != nil {
			return e, fmt.Errorf("opennebula_template: %w", err)
		}
		e.Template = tmpl
	}
	switch e.Type {
	case TypeImage:
		if len(a.Files) == 0 {
			return e, errors.New("files: an IMAGE appliance without a file")
		}
	case TypeVMTemplate, TypeServiceTemplate:
	default:
		return e, fmt.Errorf("type %q: want IMAGE, VMTEMPLATE or SERVICE_TEMPLATE", indexfile.Short(e.Type))
	}
	for n, f := range a.Files {
		ef, err := readFile(f, e.ID, n, base)
		if err != nil {
			return e, fmt.Errorf("files[%d]: %w", n, err)
		}
		e.Files = append(e.Files, ef)
	}
	return e, nil
}

func readFile(f file, id string, n int, base *url.URL) (File, error) {
	dl, err := indexfile.Resolve(base, fmt.Sprintf("appliance/%s/download/%d", id, n))
	if err != nil {
		return File{}, err
	}
	out := File{Name: f.Name, URL: f.URL, Download: dl, DevPrefix: f.DevPrefix, Driver: f.Driver, Type: f.Type}
	size, err := count(f.Size)
	if err != nil {
		return File{}, fmt.Errorf("size: %v", err)
	}
	out.Size = size
	sums, err := checksums(f)
	if err != nil {
		return File{}, err
	}
	out.Checksums = sums
	return out, nil
}

// count reads a non-negative integer written as a JSON number or a string
// of digits (the marketplace writes both); absent or null is 0.
func count(raw json.RawMessage) (int64, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, nil
	}
	if unq, err := strconv.Unquote(s); err == nil && strings.HasPrefix(s, `"`) {
		s = unq
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", indexfile.Short(s))
	}
	return n, nil
}

// checksums are the file's md5 and sha256 as "md5:<hex>"/"sha256:<hex>",
// sorted; md5 and checksum.md5 may both be given, and must then agree.
func checksums(f file) ([]string, error) {
	set := map[string]string{}
	for _, c := range []struct{ algo, field, value string }{
		{"md5", "md5", f.MD5}, {"md5", "checksum.md5", f.Checksum.MD5}, {"sha256", "checksum.sha256", f.Checksum.SHA256},
	} {
		if c.value == "" {
			continue
		}
		size := 16
		if c.algo == "sha256" {
			size = 32
		}
		h, err := indexfile.Hex(c.value, size)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", c.field, err)
		}
		if old, ok := set[c.algo]; ok && old != h {
			return nil, fmt.Errorf("%s %s differs from the other %s %s", c.field, h, c.algo, old)
		}
		set[c.algo] = h
	}
	var out []string
	for algo, h := range set {
		out = append(out, algo+":"+h)
	}
	sort.Strings(out)
	return out, nil
}

// decodeTemplate decodes the JSON document held in opennebula_template; it
// must be an object.
func decodeTemplate(s string) (map[string]any, error) {
	if len(s) > MaxTemplate {
		return nil, fmt.Errorf("longer than %d bytes", MaxTemplate)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", indexfile.JSONError(err))
	}
	if m == nil {
		return nil, errors.New("null")
	}
	return m, nil
}
