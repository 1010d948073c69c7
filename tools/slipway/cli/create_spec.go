package cli

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/schemas"
)

// createFlags are the options of `slipway image create`, as oneimage
// create names them.
type createFlags struct {
	name, datastore, description, typ string
	persistent                        bool
	devPrefix, target, path           string
	sizeMiB                           int64
	format, sourceFormat, fs          string
	compression                       string
	checksums                         []string
	rootfs                            bool
	ova                               string // --ova FILE|URL
	attrs                             []string
}

// templateKeys are the template attributes that map to fields of the
// create command; every other key becomes a free-form attribute.
var templateKeys = []string{"NAME", "PATH", "DESCRIPTION", "TYPE", "PERSISTENT", "DEV_PREFIX", "TARGET", "SIZE", "FORMAT", "FS"}

// buildCreate merges an image template (upper-case keys, may be nil) with
// the flags; a flag given on the command line (changed reports which)
// overrides the template. The result is checked enough to give a person a
// clear message before anything is uploaded; the catalog validates again.
func buildCreate(tmpl map[string]string, f createFlags, changed func(flag string) bool) (schemas.ImageCreate, error) {
	var c schemas.ImageCreate
	pick := func(flag, key, flagValue string) string {
		if changed(flag) {
			return flagValue
		}
		if v, ok := tmpl[key]; ok {
			return v
		}
		return flagValue
	}
	c.Name = strings.TrimSpace(pick("name", "NAME", f.name))
	c.Datastore = f.datastore
	c.Description = pick("description", "DESCRIPTION", f.description)
	c.Type = schemas.ImageType(strings.ToUpper(pick("type", "TYPE", f.typ)))
	c.DevPrefix = f.devPrefix
	if !changed("prefix") && !changed("dev-prefix") {
		c.DevPrefix = pick("prefix", "DEV_PREFIX", f.devPrefix)
	}
	c.Target = pick("target", "TARGET", f.target)
	c.Path = pick("path", "PATH", f.path)
	c.Format = schemas.DiskFormat(strings.ToLower(pick("format", "FORMAT", f.format)))
	c.SourceFormat = schemas.DiskFormat(strings.ToLower(f.sourceFormat))
	c.FS = schemas.Filesystem(strings.ToLower(pick("fs", "FS", f.fs)))
	c.Compression = schemas.Compression(strings.ToLower(f.compression))
	for _, sum := range f.checksums {
		c.Checksums = append(c.Checksums, normalizeChecksum(sum))
	}
	c.Rootfs = f.rootfs
	if err := applyOVA(&c, f.ova); err != nil {
		return c, err
	}
	if !changed("datastore") && isFileType(c.Type) {
		c.Datastore = "files" // file types live in the files datastore
	}

	persistent := f.persistent
	if v, ok := tmpl["PERSISTENT"]; ok && !changed("persistent") {
		persistent = false // an empty PERSISTENT is NO
		if strings.TrimSpace(v) != "" {
			b, err := yesNo(v)
			if err != nil {
				return c, fmt.Errorf("template PERSISTENT: %q: %w", v, err)
			}
			persistent = b
		}
	}
	c.Persistent = persistent

	c.SizeMiB = f.sizeMiB
	if v, ok := tmpl["SIZE"]; ok && !changed("size") {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 1 {
			return c, fmt.Errorf("template SIZE %q: want a size in MiB, at least 1", v)
		}
		c.SizeMiB = n
	}

	attrs := map[string]string{}
	for k, v := range tmpl {
		if !slices.Contains(templateKeys, k) {
			attrs[k] = v
		}
	}
	flagAttrs, err := parseAttrs(f.attrs)
	if err != nil {
		return c, err
	}
	for k, v := range flagAttrs {
		attrs[k] = v
	}
	if len(attrs) > 0 {
		c.Attributes = attrs
	}
	return c, checkCreate(c)
}

// applyOVA marks an OVA import: --ova FILE|URL is the path, and a path
// ending in .ova (or an http(s):// or s3:// URL ending in .ovf, whose
// files lie beside it) is detected as one (not with --rootfs, which says
// what the file is). A local .ovf is refused: its files would not be
// uploaded with it.
func applyOVA(c *schemas.ImageCreate, ova string) error {
	if ova != "" {
		if c.Path != "" && c.Path != ova {
			return errors.New("--ova is the path of the OVA: give --ova or --path, not both")
		}
		c.Path, c.Ova = ova, true
	}
	if c.Rootfs {
		return nil
	}
	lower := strings.ToLower(strings.TrimRight(stripQuery(c.Path), "/"))
	isOVF := strings.HasSuffix(lower, ".ovf")
	if strings.HasSuffix(lower, ".ova") || isOVF {
		c.Ova = true
	}
	if kind, _ := classifyPath(c.Path); c.Ova && isOVF && kind != pathURL {
		return errors.New("a local .ovf: pack it with its files as an OVA (tar -cf x.ova x.ovf x-disk1.vmdk x.mf, the .ovf first), or give the http(s):// or s3:// URL of a .ovf whose files lie beside it")
	}
	return nil
}

// stripQuery is a URL without its query and fragment (a presigned URL's
// signature follows the file name).
func stripQuery(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 && strings.Contains(p, "://") {
		return p[:i]
	}
	return p
}

func normalizeChecksum(s string) string {
	s = strings.TrimSpace(s)
	if algo, hex, ok := strings.Cut(s, ":"); ok {
		return strings.ToLower(algo) + ":" + strings.ToLower(hex)
	}
	return s
}

// checkCreate refuses what the catalog would refuse anyway, but before a
// local file is uploaded for nothing.
func checkCreate(c schemas.ImageCreate) error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("a name is required: --name or NAME in the template"))
	}
	if c.Path == "" && c.SizeMiB == 0 {
		errs = append(errs, errors.New("give --path (a file, http(s):// or s3:// URL) or --size (MiB, for an empty DATABLOCK)"))
	}
	if c.Path != "" && c.SizeMiB != 0 && !c.Rootfs {
		errs = append(errs, errors.New("give --path (to import data) or --size (an empty DATABLOCK), not both"))
	}
	if c.Ova && (c.Rootfs || c.SizeMiB != 0 || c.SourceFormat != "") {
		errs = append(errs, errors.New("an OVA brings its own disks: --ova does not go with --rootfs, --size or --source-format"))
	}
	if c.Rootfs && c.Path == "" {
		errs = append(errs, errors.New("--rootfs needs --path: the root filesystem tarball (a file, http(s):// or s3:// URL)"))
	}
	if c.SizeMiB < 0 {
		errs = append(errs, fmt.Errorf("--size %d: must be at least 1 MiB", c.SizeMiB))
	}
	if c.Type != "" && !slices.Contains(schemas.ImageTypeValues(), c.Type) {
		errs = append(errs, fmt.Errorf("type %q: want one of %s", c.Type, join(schemas.ImageTypeValues())))
	}
	if c.Format != "" && !slices.Contains(schemas.DiskFormatValues(), c.Format) {
		errs = append(errs, fmt.Errorf("format %q: want one of %s", c.Format, join(schemas.DiskFormatValues())))
	}
	if c.SourceFormat != "" && !slices.Contains(schemas.DiskFormatValues(), c.SourceFormat) {
		errs = append(errs, fmt.Errorf("source format %q: want one of %s", c.SourceFormat, join(schemas.DiskFormatValues())))
	}
	if c.FS != "" && !slices.Contains(schemas.FilesystemValues(), c.FS) {
		errs = append(errs, fmt.Errorf("fs %q: want one of %s", c.FS, join(schemas.FilesystemValues())))
	}
	if c.Compression != "" && !slices.Contains(schemas.CompressionValues(), c.Compression) {
		errs = append(errs, fmt.Errorf("--compression %q: want zstd or zlib", c.Compression))
	}
	if len(c.Checksums) > 3 {
		errs = append(errs, fmt.Errorf("--checksum given %d times: at most one per algorithm (md5, sha256, sha512)", len(c.Checksums)))
	} else if _, err := fetch.ParseChecksums(c.Checksums...); err != nil {
		errs = append(errs, fmt.Errorf("--checksum: %w", err))
	}
	if c.Path != "" {
		if _, err := classifyPath(c.Path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func join[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, "|")
}

// yesNo reads OpenNebula's YES/NO (and true/false, 1/0) of a template
// attribute (image, market).
func yesNo(v string) (bool, error) {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "YES", "TRUE", "1":
		return true, nil
	case "NO", "FALSE", "0":
		return false, nil
	}
	return false, errors.New("want YES or NO")
}

// pathKind says where image data comes from.
type pathKind int

const (
	pathLocal pathKind = iota // a local file, uploaded by the CLI
	pathStdin                 // "-": standard input, uploaded by the CLI
	pathURL                   // http(s):// or s3://, fetched by the converter
)

var schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)

// classifyPath refuses URL schemes Slipway cannot fetch, rather than
// taking "ftp://host/x" for a local file name.
func classifyPath(p string) (pathKind, error) {
	if p == "-" {
		return pathStdin, nil
	}
	m := schemeRE.FindStringSubmatch(p)
	if m == nil {
		return pathLocal, nil
	}
	switch strings.ToLower(m[1]) {
	case "http", "https":
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			return 0, fmt.Errorf("--path %q: not a valid URL", p)
		}
		return pathURL, nil
	case "s3":
		rest := p[len(m[0]):]
		bucket, key, ok := strings.Cut(rest, "/")
		if !ok || bucket == "" || key == "" {
			return 0, fmt.Errorf("--path %q: want s3://bucket/key", p)
		}
		return pathURL, nil
	case "docker":
		// Built by the builder from a registry; check the URL here so a
		// mistake is named before anything is sent.
		if _, err := dockerurl.Parse(p); err != nil {
			return 0, fmt.Errorf("--path: %w", err)
		}
		return pathURL, nil
	default:
		return 0, fmt.Errorf("--path %q: scheme %q is not supported: use a local file, - for standard input, http(s)://, s3:// or docker://", p, m[1])
	}
}

func isFileType(t schemas.ImageType) bool {
	return t == schemas.ImageTypeKernel || t == schemas.ImageTypeRamdisk || t == schemas.ImageTypeContext
}
