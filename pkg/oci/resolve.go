package oci

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Kinds of image.
const (
	KindContainer = "container" // a container image, to be flattened into a filesystem
	KindDisk      = "disk"      // a disk file carried in an image (/disk/ or /base_image/)
)

// Resolved is a reference pinned to one platform's manifest.
type Resolved struct {
	Reference string // "registry/repo@sha256:…", the origin registry's name
	Digest    string // the image manifest's digest
	Index     string // the digest of the multi-arch index it was picked from, if any
	MediaType string // the image manifest's media type
	Platform  string // "linux/amd64"
	Size      int64  // sum of the compressed layer sizes
	Kind      string // KindContainer or KindDisk
	DiskPath  string // for KindDisk: "/disk/<file>" or "/base_image/<file>"
	Config    *v1.ConfigFile
}

// Resolve pins ref to the manifest of opts' platform and tells whether the
// image is a container or a disk. Mirrors are tried first; the origin's
// answer, if reached, is the one reported.
func Resolve(ctx context.Context, ref string, opts Options) (Resolved, error) {
	s, err := opts.settings()
	if err != nil {
		return Resolved{}, err
	}
	r, err := name.ParseReference(ref, s.nameOptions()...)
	if err != nil {
		return Resolved{}, fmt.Errorf("reference %q: %w", ref, err)
	}
	srcs, err := s.sources(r.Context())
	if err != nil {
		return Resolved{}, err
	}
	var mirrorErrs []error
	for _, src := range srcs {
		res, err := s.resolveAt(ctx, retarget(r, src.repo))
		if err == nil {
			res.Reference = displayName(r.Context()) + "@" + res.Digest
			return res, nil
		}
		if !src.mirror || ctx.Err() != nil {
			return Resolved{}, withMirrorErrors(err, mirrorErrs)
		}
		mirrorErrs = append(mirrorErrs, fmt.Errorf("mirror %s: %w", src.repo.RegistryStr(), err))
	}
	panic("unreachable: the origin is always the last source")
}

// withMirrorErrors appends the mirrors' failures to the origin's, keeping
// the origin's error first (and matchable with errors.As).
func withMirrorErrors(err error, mirrorErrs []error) error {
	if len(mirrorErrs) == 0 {
		return err
	}
	msgs := make([]string, len(mirrorErrs))
	for i, e := range mirrorErrs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%w (mirrors failed first: %s)", err, strings.Join(msgs, "; "))
}

func (s settings) resolveAt(ctx context.Context, ref name.Reference) (Resolved, error) {
	ropts, cred, err := s.remoteOptions(ctx, ref.Context())
	if err != nil {
		return Resolved{}, err
	}
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return Resolved{}, registryError(err, ref, cred)
	}
	img, res, err := s.pickImage(ref, desc)
	if err != nil {
		return Resolved{}, registryError(err, ref, cred)
	}
	if err := describe(img, &res); err != nil {
		return Resolved{}, registryError(err, ref, cred)
	}
	if res.Platform == "" {
		// Neither an index nor the config names one: the image is taken
		// for the platform it was asked for.
		res.Platform = platformString(s.platform)
	}
	if err := s.checkPlatform(ref, res); err != nil {
		return Resolved{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return Resolved{}, registryError(err, ref, cred)
	}
	res.Kind, res.DiskPath = KindContainer, ""
	found, err := findDisk(layers)
	if err != nil {
		return Resolved{}, annotate(err, ref, cred)
	}
	if found.path != "" {
		res.Kind, res.DiskPath = KindDisk, found.path
	}
	return res, nil
}

// annotate names the image in a disk-detection error, and keeps registry
// errors met while streaming layers in the registry's words.
func annotate(err error, ref name.Reference, cred credentials) error {
	var de *DiskError
	if errors.As(err, &de) {
		return fmt.Errorf("%s: %w", displayName(ref.Context()), err)
	}
	return registryError(err, ref, cred)
}

// pickImage returns desc's image, choosing the platform's manifest when desc
// is a multi-arch index.
func (s settings) pickImage(ref name.Reference, desc *remote.Descriptor) (v1.Image, Resolved, error) {
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		return img, Resolved{}, err
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, Resolved{}, err
	}
	child, err := s.pickPlatform(ref, idx)
	if err != nil {
		return nil, Resolved{}, err
	}
	img, err := idx.Image(child.Digest)
	if err != nil {
		return nil, Resolved{}, err
	}
	return img, Resolved{Index: desc.Digest.String(), Platform: platformString(*child.Platform)}, nil
}

// pickPlatform finds the platform's image in an index, or says which
// platforms the index has.
func (s settings) pickPlatform(ref name.Reference, idx v1.ImageIndex) (v1.Descriptor, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	var avail []string
	for _, m := range im.Manifests {
		if m.Platform == nil || !m.MediaType.IsImage() {
			continue
		}
		if platformMatches(s.platform, *m.Platform) {
			return m, nil
		}
		if m.Platform.OS != "unknown" { // attestation manifests
			avail = append(avail, platformString(*m.Platform))
		}
	}
	return v1.Descriptor{}, &PlatformError{Want: platformString(s.platform), Image: displayName(ref.Context()), Available: avail}
}

// PlatformError is an image without the platform asked for.
type PlatformError struct {
	Want      string   // "linux/arm64"
	Image     string   // "docker.io/library/x"
	Available []string // the index's platforms, or the single image's
	Single    bool     // the image is not an index
}

func (e *PlatformError) Error() string {
	if e.Single {
		return fmt.Sprintf("no %s image in %s: it is a single-platform %s image", e.Want, e.Image, strings.Join(e.Available, ""))
	}
	have := "none"
	if len(e.Available) > 0 {
		have = strings.Join(e.Available, ", ")
	}
	return fmt.Sprintf("no %s image in %s: available %s", e.Want, e.Image, have)
}

// describe fills in what the manifest and config say.
func describe(img v1.Image, res *Resolved) error {
	dig, err := img.Digest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	res.Digest, res.MediaType, res.Config = dig.String(), string(mt), cfg
	res.Size = 0
	for _, l := range m.Layers {
		res.Size += l.Size
	}
	if res.Platform == "" && cfg.OS != "" && cfg.Architecture != "" {
		res.Platform = platformString(v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant})
	}
	return nil
}

// checkPlatform refuses a single-platform image of another platform than the
// one explicitly asked for (an index has been matched already).
func (s settings) checkPlatform(ref name.Reference, res Resolved) error {
	if !s.explicitPlatform || res.Index != "" || res.Config == nil || res.Config.Architecture == "" {
		return nil
	}
	got := v1.Platform{OS: res.Config.OS, Architecture: res.Config.Architecture, Variant: res.Config.Variant}
	if platformMatches(s.platform, got) {
		return nil
	}
	return &PlatformError{Want: platformString(s.platform), Image: displayName(ref.Context()),
		Available: []string{platformString(got)}, Single: true}
}
