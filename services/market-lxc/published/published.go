// Package published is the on-wire format of Slipway's private
// marketplaces (OpenNebula's MARKET_MAD http and s3): what a publisher
// writes under a base (a PUBLIC_DIR served at BASE_URL, or a prefix of an
// S3 bucket) and what a lister reads back.
//
//	<base>/index.json                  Index: format version and every app
//	<base>/apps/<name>/app.json        Meta: one app's metadata
//	<base>/apps/<name>/disk.<format>   the image itself
//
// Every location is derived here from a name that passed ValidateName and
// a format that passed ValidateFormat; nothing read from a document or a
// message becomes a path, a key or a URL any other way. Documents read
// back are size-capped and every field is checked (App.Validate), so a
// hostile index cannot name a file outside the base or another host.
package published

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/slipway/slipway/pkg/onetemplate"
)

// FormatVersion is the version of the documents this package writes and
// the only one it reads.
const FormatVersion = 1

// IndexFile is the index document's path under the base.
const IndexFile = "index.json"

// appsDir holds one directory per app.
const appsDir = "apps/"

// metaFile is an app's metadata document in its directory.
const metaFile = "app.json"

// Limits on what a reader accepts. The index holds every app's metadata,
// VM template included, so it is allowed much more than one app.
const (
	MaxIndexBytes       = 16 << 20
	MaxMetaBytes        = 256 << 10
	MaxApps             = 10000
	maxNameLen          = 128
	maxVersionLen       = 64
	maxPublisherLen     = 128
	maxDescriptionBytes = 8 << 10
	maxTemplateBytes    = 64 << 10
)

// Formats are the disk formats an app may have: the image formats Slipway
// keeps, named as OpenNebula names them.
var Formats = []string{"raw", "qcow2"}

// ErrInvalid is wrapped by every error about a name, a field or a document
// that breaks the format.
var ErrInvalid = errors.New("invalid marketplace document")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ValidateName checks an app name, the one validator every path, S3 key
// and URL of an app goes through: 1 to 128 of the characters A-Z a-z 0-9
// '.' '_' '-', starting with a letter or a digit, without "..". So a name
// is one path segment that needs no escaping in a URL, a file name or an
// S3 key, and never "." or "..".
func ValidateName(name string) error {
	switch {
	case name == "":
		return invalid("empty app name")
	case len(name) > maxNameLen:
		return invalid("app name %.40q…: longer than %d characters", name, maxNameLen)
	case !isAlnum(rune(name[0])):
		return invalid("app name %q: must start with a letter or a digit", name)
	case strings.Contains(name, ".."):
		return invalid("app name %q: must not contain \"..\"", name)
	}
	for _, r := range name {
		if !isAlnum(r) && r != '.' && r != '_' && r != '-' {
			return invalid("app name %q: character %q is not allowed (use letters, digits, '.', '_', '-')", name, r)
		}
	}
	return nil
}

func isAlnum(r rune) bool {
	return r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
}

// ValidateFormat checks a disk format against Formats.
func ValidateFormat(format string) error {
	if !slices.Contains(Formats, format) {
		return invalid("format %q: want one of %s", format, strings.Join(Formats, ", "))
	}
	return nil
}

// AppDir is the directory of app name under the base ("apps/<name>/").
// name must have passed ValidateName.
func AppDir(name string) string { return appsDir + name + "/" }

// MetaPath is the metadata document of app name under the base.
func MetaPath(name string) string { return AppDir(name) + metaFile }

// BlobPath is the image of app name in format under the base.
func BlobPath(name, format string) string { return AppDir(name) + "disk." + format }

// App is one published app: the metadata document and an index entry.
type App struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Format is the disk format of the blob (Formats).
	Format string `json:"format"`
	// Size is the blob's size in bytes.
	Size int64 `json:"size"`
	// VirtualSize is the disk's virtual size in bytes, 0 when unknown.
	VirtualSize int64  `json:"virtual_size,omitempty"`
	SHA256      string `json:"sha256"`
	Description string `json:"description,omitempty"`
	Publisher   string `json:"publisher,omitempty"`
	// VMTemplate is the OpenNebula VM template text that goes with the
	// image (OpenNebula's APPTEMPLATE64/VMTEMPLATE64, here in clear).
	VMTemplate string    `json:"vm_template,omitempty"`
	Created    time.Time `json:"created"`
	// Blob is the blob's path under the base, BlobPath(Name, Format):
	// written for plain HTTP clients, checked (never used) by readers.
	Blob string `json:"blob"`
}

// Validate checks every field of a, as a publisher before writing and a
// reader after decoding. The error names the app and the field.
func (a App) Validate() error {
	if err := ValidateName(a.Name); err != nil {
		return err
	}
	if err := a.validateFields(); err != nil {
		return fmt.Errorf("app %s: %w", a.Name, err)
	}
	return nil
}

func (a App) validateFields() error {
	if err := ValidateFormat(a.Format); err != nil {
		return err
	}
	if err := ValidateSHA256(a.SHA256); err != nil {
		return err
	}
	switch {
	case a.Size < 0:
		return invalid("size %d is negative", a.Size)
	case a.VirtualSize < 0:
		return invalid("virtual_size %d is negative", a.VirtualSize)
	case a.Created.IsZero():
		return invalid("created time is missing")
	case a.Blob != BlobPath(a.Name, a.Format):
		return invalid("blob %q: must be %q", a.Blob, BlobPath(a.Name, a.Format))
	}
	checks := []struct {
		field, value string
		max          int
		multiline    bool
	}{
		{"version", a.Version, maxVersionLen, false},
		{"publisher", a.Publisher, maxPublisherLen, false},
		{"description", a.Description, maxDescriptionBytes, true},
		{"vm_template", a.VMTemplate, maxTemplateBytes, true},
	}
	for _, c := range checks {
		if err := validText(c.field, c.value, c.max, c.multiline); err != nil {
			return err
		}
	}
	if strings.TrimSpace(a.Version) == "" {
		return invalid("version is empty")
	}
	if a.VMTemplate != "" {
		if _, err := onetemplate.ParseString(a.VMTemplate); err != nil {
			return invalid("vm_template: %v", err)
		}
	}
	return nil
}

// validText refuses text that is too long, not UTF-8, or holds control
// characters (but for newlines and tabs in multi-line fields).
func validText(field, s string, max int, multiline bool) error {
	if len(s) > max {
		return invalid("%s: %d bytes, at most %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return invalid("%s: not UTF-8", field)
	}
	for _, r := range s {
		if multiline && (r == '\n' || r == '\t' || r == '\r') {
			continue
		}
		if unicode.IsControl(r) {
			return invalid("%s: control character %q", field, r)
		}
	}
	return nil
}

// ValidateSHA256 checks a lower-case hex SHA-256 digest.
func ValidateSHA256(s string) error {
	if len(s) != 64 || strings.ToLower(s) != s {
		return invalid("sha256 %.80q: want 64 lower-case hex digits", s)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return invalid("sha256 %q: want 64 lower-case hex digits", s)
	}
	return nil
}

// Meta is an app's metadata document (apps/<name>/app.json).
type Meta struct {
	FormatVersion int `json:"format_version"`
	App
}

// Index is the index document (index.json): every app, sorted by name.
type Index struct {
	FormatVersion int   `json:"format_version"`
	Apps          []App `json:"apps"`
}

// NewIndex is an empty index of the current version.
func NewIndex() *Index { return &Index{FormatVersion: FormatVersion, Apps: []App{}} }

// Find returns the app called name.
func (ix *Index) Find(name string) (App, bool) {
	i, ok := ix.search(name)
	if !ok {
		return App{}, false
	}
	return ix.Apps[i], true
}

func (ix *Index) search(name string) (int, bool) {
	return slices.BinarySearchFunc(ix.Apps, name, func(a App, n string) int { return strings.Compare(a.Name, n) })
}

// ErrExists says an app of that name is already published.
var ErrExists = errors.New("app already published")

// Add inserts a, keeping the apps sorted; an app of the same name is
// ErrExists.
func (ix *Index) Add(a App) error {
	i, ok := ix.search(a.Name)
	if ok {
		return fmt.Errorf("app %s: %w", a.Name, ErrExists)
	}
	if len(ix.Apps) >= MaxApps {
		return invalid("index holds %d apps, the most a reader accepts", MaxApps)
	}
	ix.Apps = slices.Insert(ix.Apps, i, a)
	return nil
}

// Remove drops the app called name and says whether it was there.
func (ix *Index) Remove(name string) bool {
	i, ok := ix.search(name)
	if ok {
		ix.Apps = slices.Delete(ix.Apps, i, i+1)
	}
	return ok
}

// Encode is the index document's bytes.
func (ix *Index) Encode() ([]byte, error) { return encode(ix) }

// EncodeMeta is a's metadata document's bytes.
func EncodeMeta(a App) ([]byte, error) { return encode(Meta{FormatVersion: FormatVersion, App: a}) }

func encode(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DecodeIndex reads an index document of at most MaxIndexBytes and checks
// its version, every app, their order and that no name repeats.
func DecodeIndex(r io.Reader) (*Index, error) {
	var ix Index
	if err := decode(r, MaxIndexBytes, "index", &ix); err != nil {
		return nil, err
	}
	if err := checkVersion("index", ix.FormatVersion); err != nil {
		return nil, err
	}
	if len(ix.Apps) > MaxApps {
		return nil, invalid("index: %d apps, at most %d", len(ix.Apps), MaxApps)
	}
	if ix.Apps == nil {
		ix.Apps = []App{}
	}
	for i, a := range ix.Apps {
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("index: app %d: %w", i, err)
		}
		if i > 0 && ix.Apps[i-1].Name >= a.Name {
			return nil, invalid("index: app %d (%s) repeats or is out of order after %s", i, a.Name, ix.Apps[i-1].Name)
		}
	}
	return &ix, nil
}

// DecodeMeta reads a metadata document of at most MaxMetaBytes and checks
// its version and every field.
func DecodeMeta(r io.Reader) (App, error) {
	var m Meta
	if err := decode(r, MaxMetaBytes, "app metadata", &m); err != nil {
		return App{}, err
	}
	if err := checkVersion("app metadata", m.FormatVersion); err != nil {
		return App{}, err
	}
	if err := m.App.Validate(); err != nil {
		return App{}, fmt.Errorf("app metadata: %w", err)
	}
	return m.App, nil
}

// decode reads one JSON document of at most max bytes into v. Unknown
// fields are ignored (a later minor addition); a field of the wrong type
// is an error naming it.
func decode(r io.Reader, max int64, what string, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(b)) > max {
		return invalid("%s is larger than %d bytes", what, max)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return invalid("%s: %v", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("%s: data after the JSON document", what)
	}
	return nil
}

func checkVersion(what string, v int) error {
	if v != FormatVersion {
		return invalid("%s: format_version %d, this reader knows %d", what, v, FormatVersion)
	}
	return nil
}
