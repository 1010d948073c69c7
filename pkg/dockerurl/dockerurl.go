// Package dockerurl parses the docker:// image sources of the seed's DockerHub
// marketplace, e.g.
//
//	docker://nginx?size=3072&filesystem=ext4&format=raw&tag=alpine
//	docker://registry.local:5000/team/app:1.2
//	docker://nginx@sha256:<64 hex>
//	docker://127.0.0.1:5000/busybox?tag=musl&arch=arm64
//
// Repository names follow go-containerregistry's name.ParseReference rules;
// the query carries the VM-disk options. Every error names what is wrong.
package dockerurl

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Scheme is the URL scheme this package parses.
const Scheme = "docker://"

// Defaults applied by Parse.
const (
	DefaultTag        = "latest"
	DefaultFilesystem = "ext4"
	DefaultFormat     = "raw"
)

// MaxSizeMiB bounds size= so that the size in bytes always fits an int64 with
// room to spare (64 TiB).
const MaxSizeMiB = 64 << 20

// dockerHub is go-containerregistry's name for Docker Hub's registry.
const dockerHub = name.DefaultRegistry

// URL is a parsed docker:// source.
type URL struct {
	Registry   string // "" = Docker Hub
	Repository string // "library/nginx" for "nginx" on Docker Hub
	Tag        string // "latest" unless given; "" when only a digest pins the image
	Digest     string // "sha256:…" when pinned
	SizeMiB    int64  // 0 = not given (the builder sizes the disk itself)
	Filesystem string // ext2 | ext3 | ext4 (default) | xfs
	Format     string // raw (default) | qcow2
	Distro     string // optional; otherwise read from the image's /etc/os-release
	Arch       string // optional ("amd64", "arm64", "arm/v7"); default the host's
}

var (
	allowedKeys  = []string{"size", "filesystem", "format", "tag", "distro", "arch"}
	filesystems  = []string{"ext2", "ext3", "ext4", "xfs"}
	formats      = []string{"raw", "qcow2"}
	componentRE  = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	distroRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	archRE       = regexp.MustCompile(`^(amd64|arm64|arm|386|ppc64le|ppc64|s390x|riscv64|mips64le|mips64|mipsle|mips|loong64|wasm)(/v[0-9]{1,2})?$`)
	archAliases  = map[string]string{"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386", "armhf": "arm/v7", "armv7l": "arm/v7", "armel": "arm/v6"}
	errEmpty     = errors.New("empty docker URL: want docker://[registry/]repository[:tag][@sha256:…][?size=MiB&…]")
	errNoImage   = errors.New("docker URL names no image: want docker://[registry/]repository[:tag]")
	digestPrefix = "sha256:"
)

// PickTag is the tag a repository with tags shows by default (a
// marketplace app's VERSION, the tag an import takes when none is given):
// DefaultTag when tags has it, else the first tag, else DefaultTag.
func PickTag(tags []string) string {
	for _, t := range tags {
		if t == DefaultTag {
			return t
		}
	}
	if len(tags) > 0 {
		return tags[0]
	}
	return DefaultTag
}

// Parse parses a docker:// URL, applying the defaults above.
func Parse(s string) (URL, error) {
	u, err := parse(s)
	if err != nil {
		return URL{}, err
	}
	// What is accepted must be writable back: its reference parses and its
	// canonical form reads back as the same URL. Anything else (a name too
	// long once "library/" is added, a repository that reads back as a
	// registry) is refused here rather than misread later.
	if _, err := name.ParseReference(u.Reference()); err != nil {
		return URL{}, fmt.Errorf("docker URL %q: its image reference %q does not parse: %w", s, u.Reference(), err)
	}
	if again, err := parse(u.String()); err != nil || again != u {
		return URL{}, fmt.Errorf("docker URL %q cannot be written back unambiguously (as %q)", s, u.String())
	}
	return u, nil
}

func parse(s string) (URL, error) {
	if s == "" {
		return URL{}, errEmpty
	}
	if !strings.HasPrefix(s, Scheme) {
		return URL{}, fmt.Errorf("%q is not a docker URL: it must start with %s", s, Scheme)
	}
	refPart, query, _ := strings.Cut(strings.TrimPrefix(s, Scheme), "?")
	if refPart == "" {
		return URL{}, errNoImage
	}
	u, err := parseRef(refPart)
	if err != nil {
		return URL{}, err
	}
	if err := u.applyQuery(query); err != nil {
		return URL{}, err
	}
	if u.Tag == "" && u.Digest == "" {
		u.Tag = DefaultTag
	}
	return u, nil
}

// parseRef splits "[registry/]repo[:tag][@digest]" and validates it with
// go-containerregistry's rules.
func parseRef(ref string) (URL, error) {
	base, dig, pinned := strings.Cut(ref, "@")
	tag := ""
	if i := strings.LastIndexByte(base, ':'); i > strings.LastIndexByte(base, '/') {
		base, tag = base[:i], base[i+1:]
		if tag == "" {
			return URL{}, fmt.Errorf("image %q: empty tag after ':'", ref)
		}
	}
	full := base
	if tag != "" {
		full += ":" + tag
	}
	if pinned {
		if !strings.HasPrefix(dig, digestPrefix) {
			return URL{}, fmt.Errorf("image %q: digest %q must be sha256:<64 hex digits>", ref, dig)
		}
		full += "@" + dig
	}
	parsed, err := name.ParseReference(full)
	if err != nil {
		return URL{}, fmt.Errorf("image %q: %w", ref, err)
	}
	repo := parsed.Context()
	if err := checkComponents(repo.RepositoryStr()); err != nil {
		return URL{}, fmt.Errorf("image %q: %w", ref, err)
	}
	u := URL{Repository: repo.RepositoryStr(), Tag: tag}
	if reg := repo.RegistryStr(); reg != dockerHub {
		u.Registry = reg
	}
	if pinned {
		u.Digest = dig
	}
	return u, nil
}

// checkComponents applies the distribution reference grammar to each path
// component, which go-containerregistry's weak validation leaves loose
// ("a//b", "a/-b" pass there but no registry accepts them).
func checkComponents(repo string) error {
	for _, c := range strings.Split(repo, "/") {
		if !componentRE.MatchString(c) {
			return fmt.Errorf("repository %q: path component %q must be lower-case letters and digits, separated by '.', '_', '__' or '-'", repo, c)
		}
	}
	return nil
}

// applyQuery validates and applies the query options.
func (u *URL) applyQuery(query string) error {
	vals, err := url.ParseQuery(query)
	if err != nil {
		return fmt.Errorf("docker URL query %q: %w", query, err)
	}
	u.Filesystem, u.Format = DefaultFilesystem, DefaultFormat
	for _, key := range allowedKeys {
		v, ok, err := single(vals, key)
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		if err := u.set(key, v); err != nil {
			return err
		}
		delete(vals, key)
	}
	if len(vals) > 0 {
		unknown := make([]string, 0, len(vals))
		for key := range vals {
			unknown = append(unknown, strconv.Quote(key))
		}
		sort.Strings(unknown)
		return fmt.Errorf("unknown docker URL option %s: allowed are %s", strings.Join(unknown, ", "), strings.Join(allowedKeys, ", "))
	}
	return nil
}

// single returns the one value of key; repeated or empty values are errors.
func single(vals url.Values, key string) (string, bool, error) {
	vs, ok := vals[key]
	switch {
	case !ok:
		return "", false, nil
	case len(vs) > 1:
		return "", false, fmt.Errorf("docker URL option %s= given %d times", key, len(vs))
	case vs[0] == "":
		return "", false, fmt.Errorf("docker URL option %s= is empty", key)
	}
	return vs[0], true, nil
}

func (u *URL) set(key, v string) error {
	switch key {
	case "size":
		return u.setSize(v)
	case "filesystem":
		if !slices.Contains(filesystems, v) {
			return fmt.Errorf("unsupported filesystem=%s: use ext2, ext3, ext4 or xfs", v)
		}
		u.Filesystem = v
	case "format":
		if !slices.Contains(formats, v) {
			return fmt.Errorf("unsupported format=%s: use raw or qcow2", v)
		}
		u.Format = v
	case "tag":
		return u.setTag(v)
	case "distro":
		if !distroRE.MatchString(v) {
			return fmt.Errorf("invalid distro=%q: use letters, digits, '.', '_' or '-' (at most 64)", v)
		}
		u.Distro = v
	case "arch":
		return u.setArch(v)
	}
	return nil
}

func (u *URL) setSize(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("invalid size=%s: want a positive whole number of MiB", v)
	}
	if n > MaxSizeMiB {
		return fmt.Errorf("invalid size=%s: at most %d MiB (64 TiB)", v, MaxSizeMiB)
	}
	u.SizeMiB = n
	return nil
}

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

func (u *URL) setTag(v string) error {
	if u.Tag != "" && u.Tag != v {
		return fmt.Errorf("conflicting tags: %q in the image name and tag=%s", u.Tag, v)
	}
	// The tag's own grammar (OCI distribution): "x:"+v alone would also
	// take "/0" as a registry port and a repository.
	if !tagRE.MatchString(v) {
		return fmt.Errorf("invalid tag=%s: a tag is a letter, digit or '_' then up to 127 of those, '.' or '-'", v)
	}
	u.Tag = v
	return nil
}

func (u *URL) setArch(v string) error {
	a := strings.TrimPrefix(v, "linux/")
	if alias, ok := archAliases[a]; ok {
		a = alias
	}
	if !archRE.MatchString(a) {
		return fmt.Errorf("unsupported arch=%s: use a Go/OCI architecture such as amd64, arm64, arm/v7, 386, ppc64le, s390x or riscv64", v)
	}
	u.Arch = a
	return nil
}

// name returns "[registry/]repository" in Docker's short form: Docker Hub's
// official images lose their implicit "library/".
func (u URL) name() string {
	if u.Registry != "" {
		return u.Registry + "/" + u.Repository
	}
	if short, ok := strings.CutPrefix(u.Repository, "library/"); ok && !strings.Contains(short, "/") {
		return short
	}
	// A Docker Hub repository whose first component looks like a host
	// ("0.0/app", "localhost/app") would read back as a registry: spell
	// Docker Hub out.
	if first, _, ok := strings.Cut(u.Repository, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return "docker.io/" + u.Repository
	}
	return u.Repository
}

// Reference returns the image reference as name.ParseReference accepts it,
// with the registry spelled out ("docker.io/library/nginx:alpine") and the
// digest when pinned ("…:alpine@sha256:…").
func (u URL) Reference() string {
	reg := u.Registry
	if reg == "" {
		reg = "docker.io"
	}
	ref := reg + "/" + u.Repository
	if u.Tag != "" {
		ref += ":" + u.Tag
	}
	if u.Digest != "" {
		ref += "@" + u.Digest
	}
	return ref
}

// String returns the canonical docker:// form: the tag in the name, options
// in a fixed order. Parse(u.String()) == u for every u that Parse returned.
func (u URL) String() string {
	var b strings.Builder
	b.WriteString(Scheme + u.name())
	if u.Tag != "" {
		b.WriteString(":" + u.Tag)
	}
	if u.Digest != "" {
		b.WriteString("@" + u.Digest)
	}
	var q []string
	add := func(k, v string) {
		if v != "" {
			q = append(q, k+"="+url.QueryEscape(v))
		}
	}
	if u.SizeMiB != 0 {
		add("size", strconv.FormatInt(u.SizeMiB, 10))
	}
	add("filesystem", u.Filesystem)
	add("format", u.Format)
	add("distro", u.Distro)
	add("arch", u.Arch)
	if len(q) > 0 {
		b.WriteString("?" + strings.Join(q, "&"))
	}
	return b.String()
}
