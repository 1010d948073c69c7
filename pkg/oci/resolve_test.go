package oci_test

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
)

func TestResolveTagAndDigest(t *testing.T) {
	ctx := context.Background()
	host := testenv.OCIRegistry(t)
	img := busyboxImage(t, "linux/amd64")
	want := push(t, host+"/team/busybox:musl", img)

	rt := &countingTransport{base: http.DefaultTransport}
	res, err := oci.Resolve(ctx, host+"/team/busybox:musl", oci.Options{Guard: loopback, Platform: "linux/amd64", Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	if rt.n.Load() == 0 {
		t.Fatal("Options.Transport was not used")
	}
	if res.Digest != want || res.Reference != host+"/team/busybox@"+want {
		t.Fatalf("resolved %s / %s, want digest %s", res.Reference, res.Digest, want)
	}
	if res.Kind != oci.KindContainer || res.DiskPath != "" || res.Platform != "linux/amd64" || res.Index != "" {
		t.Fatalf("resolved %+v", res)
	}
	m, _ := img.Manifest()
	if res.Size != m.Layers[0].Size+m.Layers[1].Size || res.MediaType != string(m.MediaType) {
		t.Fatalf("size %d media type %s, manifest %+v", res.Size, res.MediaType, m)
	}
	if res.Config == nil || res.Config.Config.Cmd[0] != "/bin/sh" {
		t.Fatalf("config %+v", res.Config)
	}

	// The pinned reference resolves to itself.
	again, err := oci.Resolve(ctx, res.Reference, oci.Options{Guard: loopback})
	if err != nil || again.Digest != want {
		t.Fatalf("resolve pinned: %+v, %v", again, err)
	}

	// Moving the tag does not move the pinned reference.
	push(t, host+"/team/busybox:musl", image(t, "linux/amd64", layer(t, file("x", "other"))))
	moved, err := oci.Resolve(ctx, host+"/team/busybox:musl", oci.Options{Guard: loopback})
	if err != nil || moved.Digest == want {
		t.Fatalf("after retag: %+v, %v", moved, err)
	}
	pinned, err := oci.Resolve(ctx, res.Reference, oci.Options{Guard: loopback})
	if err != nil || pinned.Digest != want {
		t.Fatalf("pinned after retag: %+v, %v", pinned, err)
	}
}

func TestResolveMultiArch(t *testing.T) {
	ctx := context.Background()
	host := testenv.OCIRegistry(t)
	amd := busyboxImage(t, "linux/amd64")
	arm := image(t, "linux/arm64/v8", layer(t, file("arch", "arm64")))
	s390 := image(t, "linux/s390x", layer(t, file("arch", "s390x")))
	idx := pushIndex(t, host+"/multi:1", mapOf[v1.Image]("linux/amd64", amd, "linux/arm64/v8", arm, "linux/s390x", s390))

	for platform, want := range map[string]string{"linux/amd64": digestOf(t, amd), "arm64": digestOf(t, arm), "linux/arm64/v8": digestOf(t, arm), "s390x": digestOf(t, s390)} {
		res, err := oci.Resolve(ctx, host+"/multi:1", oci.Options{Guard: loopback, Platform: platform})
		if err != nil {
			t.Fatalf("%s: %v", platform, err)
		}
		if res.Digest != want || res.Index != idx || res.Reference != host+"/multi@"+want {
			t.Fatalf("%s: resolved %+v, want %s from index %s", platform, res, want, idx)
		}
	}
	res, _ := oci.Resolve(ctx, host+"/multi:1", oci.Options{Guard: loopback, Platform: "arm64"})
	if res.Platform != "linux/arm64/v8" {
		t.Fatalf("platform %q", res.Platform)
	}
	// The index's digest, pinned, picks the platform too.
	byIdx, err := oci.Resolve(ctx, host+"/multi@"+idx, oci.Options{Guard: loopback, Platform: "linux/s390x"})
	if err != nil || byIdx.Digest != digestOf(t, s390) {
		t.Fatalf("by index digest: %+v %v", byIdx, err)
	}
	pulled, err := pullAll(t, ctx, host+"/multi@"+idx, t.TempDir(), oci.Options{Guard: loopback, Platform: "arm64"})
	if err != nil || pulled.Digest() != digestOf(t, arm) {
		t.Fatalf("pull by index digest: %v", err)
	}

	_, err = oci.Resolve(ctx, host+"/multi:1", oci.Options{Guard: loopback, Platform: "linux/riscv64"})
	mustContain(t, err, "no linux/riscv64 image in "+host+"/multi: available linux/amd64, linux/arm64/v8, linux/s390x")
	_, err = oci.Resolve(ctx, host+"/multi:1", oci.Options{Guard: loopback, Platform: "linux/arm64/v7"})
	mustContain(t, err, "no linux/arm64/v7 image")

	// A single-platform image of another platform than asked for.
	push(t, host+"/single:1", amd)
	_, err = oci.Resolve(ctx, host+"/single:1", oci.Options{Guard: loopback, Platform: "linux/arm64"})
	mustContain(t, err, "no linux/arm64 image in "+host+"/single: it is a single-platform linux/amd64 image")
}

func TestResolveUnknown(t *testing.T) {
	ctx := context.Background()
	host := testenv.OCIRegistry(t)
	push(t, host+"/team/app:1", busyboxImage(t, "linux/amd64"))

	_, err := oci.Resolve(ctx, host+"/team/app:nope", oci.Options{Guard: loopback})
	mustContain(t, err, "registry "+host+": MANIFEST_UNKNOWN: ", `(tag "nope" in team/app)`)
	var re *oci.RegistryError
	if !errors.As(err, &re) || re.Code != "MANIFEST_UNKNOWN" || re.Status != http.StatusNotFound {
		t.Fatalf("error %#v", err)
	}
	_, err = oci.Resolve(ctx, host+"/team/ghost:1", oci.Options{Guard: loopback})
	mustContain(t, err, "registry "+host+": NAME_UNKNOWN: ", `(repository "team/ghost")`)
	_, err = oci.Resolve(ctx, host+"/team/app@sha256:"+strings.Repeat("0", 64), oci.Options{Guard: loopback})
	mustContain(t, err, "MANIFEST_UNKNOWN", `(digest "sha256:0000`, `" in team/app)`)

	_, err = oci.Resolve(ctx, "Bad Name", oci.Options{Guard: loopback})
	mustContain(t, err, `reference "Bad Name"`)
	_, err = oci.Resolve(ctx, host+"/team/app:1", oci.Options{Guard: loopback, Platform: "a/b/c/d"})
	mustContain(t, err, "invalid platform")
	// Nothing listens on port 1.
	_, err = oci.Resolve(ctx, "127.0.0.1:1/x:1", oci.Options{Guard: loopback})
	mustContain(t, err, "registry 127.0.0.1:1: ", "connection refused")
}

func TestAuth(t *testing.T) {
	ctx := context.Background()
	host := testenv.OCIRegistry(t, basicAuth("slipway", "s3cret"))
	want := push(t, host+"/private/app:1", busyboxImage(t, "linux/amd64"), basic("slipway", "s3cret"))

	good := writeDockerConfig(t, map[string]string{host: "slipway:s3cret"})
	res, err := oci.Resolve(ctx, host+"/private/app:1", oci.Options{Guard: loopback, DockerConfig: good})
	if err != nil || res.Digest != want {
		t.Fatalf("with credentials: %+v %v", res, err)
	}
	img, err := pullAll(t, ctx, res.Reference, t.TempDir(), oci.Options{Guard: loopback, DockerConfig: good})
	if err != nil || img.Digest() != want {
		t.Fatalf("pull with credentials: %v", err)
	}

	bad := writeDockerConfig(t, map[string]string{host: "slipway:wrong"})
	_, err = oci.Resolve(ctx, host+"/private/app:1", oci.Options{Guard: loopback, DockerConfig: bad})
	mustContain(t, err, "registry "+host+": authentication refused for private/app with the credentials from "+bad, "UNAUTHORIZED")
	if !errors.Is(err, oci.ErrUnauthorized) {
		t.Fatalf("%v is not ErrUnauthorized", err)
	}
	_, err = pullAll(t, ctx, res.Reference, t.TempDir(), oci.Options{Guard: loopback, DockerConfig: bad})
	mustContain(t, err, "authentication refused")

	other := writeDockerConfig(t, map[string]string{"registry.example:5000": "a:b"})
	_, err = oci.Resolve(ctx, host+"/private/app:1", oci.Options{Guard: loopback, DockerConfig: other})
	mustContain(t, err, "authentication required for private/app and "+other+" has no credentials for "+host)

	_, err = oci.Resolve(ctx, host+"/private/app:1", oci.Options{Guard: loopback, DockerConfig: "/nonexistent/config.json"})
	mustContain(t, err, "/nonexistent/config.json", "no such file")

	// The default keychain reads $DOCKER_CONFIG/config.json.
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", strings.TrimSuffix(good, "/config.json"))
	res, err = oci.Resolve(ctx, host+"/private/app:1", oci.Options{Guard: loopback})
	if err != nil || res.Digest != want {
		t.Fatalf("default keychain: %+v %v", res, err)
	}
}

func TestMirrors(t *testing.T) {
	ctx := context.Background()
	var originHits, mirrorHits counter
	origin := testenv.OCIRegistry(t, originHits.wrap(isManifestGet))
	mirror := testenv.OCIRegistry(t, mirrorHits.wrap(isManifestGet))
	fromOrigin := push(t, origin+"/lib/app:1", busyboxImage(t, "linux/amd64"))
	fromMirror := push(t, mirror+"/lib/app:1", image(t, "linux/amd64", layer(t, file("mirror", "yes"))))
	opts := oci.Options{Guard: loopback, Mirrors: map[string][]string{origin: {"127.0.0.1:1", mirror}}}

	res, err := oci.Resolve(ctx, origin+"/lib/app:1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != fromMirror || res.Reference != origin+"/lib/app@"+fromMirror {
		t.Fatalf("resolved %+v, want the mirror's %s named after the origin", res, fromMirror)
	}
	if originHits.count() != 0 || mirrorHits.count() == 0 {
		t.Fatalf("origin hit %d times, mirror %d", originHits.count(), mirrorHits.count())
	}
	if _, err := pullAll(t, ctx, res.Reference, t.TempDir(), opts); err != nil {
		t.Fatalf("pull through mirror: %v", err)
	}
	if originHits.count() != 0 {
		t.Fatalf("pull went to the origin")
	}

	// The mirror lacks this tag: the origin answers.
	push(t, origin+"/lib/app:2", busyboxImage(t, "linux/amd64"))
	res, err = oci.Resolve(ctx, origin+"/lib/app:2", opts)
	if err != nil || res.Digest != fromOrigin {
		t.Fatalf("fallback to origin: %+v %v", res, err)
	}
	// The origin's pinned image is not on the mirror: the pull falls back.
	if _, err := pullAll(t, ctx, res.Reference, t.TempDir(), opts); err != nil {
		t.Fatalf("pull fallback: %v", err)
	}

	// Nobody has it: the origin's error comes first, the mirrors' after.
	_, err = oci.Resolve(ctx, origin+"/lib/app:3", opts)
	mustContain(t, err, "registry "+origin+": MANIFEST_UNKNOWN", "mirrors failed first: mirror 127.0.0.1:1", "mirror "+mirror+": registry "+mirror+": MANIFEST_UNKNOWN")
	var re *oci.RegistryError
	if !errors.As(err, &re) || re.Registry != origin {
		t.Fatalf("first error %#v", re)
	}
}

// TestDockerHubMirror: Docker Hub names go to the mirror configured for
// Docker Hub, and results are named after Docker Hub (which this test never
// reaches: the mirror answers first).
func TestDockerHubMirror(t *testing.T) {
	ctx := context.Background()
	mirror := testenv.OCIRegistry(t)
	want := push(t, mirror+"/library/busybox:1", busyboxImage(t, "linux/amd64"))
	for _, key := range []string{"docker.io", "index.docker.io"} {
		opts := oci.Options{Guard: loopback, Mirrors: map[string][]string{key: {mirror}}, DockerConfig: writeDockerConfig(t, nil)}
		res, err := oci.Resolve(ctx, "busybox:1", opts)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if res.Reference != "docker.io/library/busybox@"+want {
			t.Fatalf("%s: reference %q", key, res.Reference)
		}
		img, err := pullAll(t, ctx, res.Reference, t.TempDir(), opts)
		if err != nil || img.Digest() != want {
			t.Fatalf("%s: pull: %v", key, err)
		}
	}
}

type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func mapOf[V any](kv ...any) map[string]V {
	m := map[string]V{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(V)
	}
	return m
}

// An image is reported with the platform its config names; one whose
// config names none is taken for the platform asked for (arch=), else the
// host's.
func TestResolvePlatformOfAConfigWithoutOne(t *testing.T) {
	host := testenv.OCIRegistry(t)
	ctx := context.Background()
	push(t, host+"/p/armv7:1", image(t, "linux/arm/v7", layer(t, file("a", "a"))))
	bare, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	push(t, host+"/p/bare:1", bare)

	for _, c := range []struct{ ref, platform, want string }{
		{host + "/p/armv7:1", "", "linux/arm/v7"},
		{host + "/p/bare:1", "arm64", "linux/arm64"},
		{host + "/p/bare:1", "", "linux/" + runtime.GOARCH},
	} {
		r, err := oci.Resolve(ctx, c.ref, oci.Options{Guard: loopback, Platform: c.platform})
		if err != nil {
			t.Fatalf("%s: %v", c.ref, err)
		}
		if r.Platform != c.want {
			t.Errorf("%s (platform %q): %s, want %s", c.ref, c.platform, r.Platform, c.want)
		}
	}
}
