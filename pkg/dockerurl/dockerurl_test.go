package dockerurl_test

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/slipway/slipway/pkg/dockerurl"
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want dockerurl.URL
		ref  string
		str  string
	}{{
		in:   "docker://nginx?size=3072&filesystem=ext4&format=raw&tag=alpine",
		want: dockerurl.URL{Repository: "library/nginx", Tag: "alpine", SizeMiB: 3072, Filesystem: "ext4", Format: "raw"},
		ref:  "docker.io/library/nginx:alpine",
		str:  "docker://nginx:alpine?size=3072&filesystem=ext4&format=raw",
	}, {
		in:   "docker://nginx",
		want: dockerurl.URL{Repository: "library/nginx", Tag: "latest", Filesystem: "ext4", Format: "raw"},
		ref:  "docker.io/library/nginx:latest",
		str:  "docker://nginx:latest?filesystem=ext4&format=raw",
	}, {
		in:   "docker://registry.local:5000/team/app:1.2",
		want: dockerurl.URL{Registry: "registry.local:5000", Repository: "team/app", Tag: "1.2", Filesystem: "ext4", Format: "raw"},
		ref:  "registry.local:5000/team/app:1.2",
		str:  "docker://registry.local:5000/team/app:1.2?filesystem=ext4&format=raw",
	}, {
		in:   "docker://nginx@sha256:" + hex64,
		want: dockerurl.URL{Repository: "library/nginx", Digest: "sha256:" + hex64, Filesystem: "ext4", Format: "raw"},
		ref:  "docker.io/library/nginx@sha256:" + hex64,
		str:  "docker://nginx@sha256:" + hex64 + "?filesystem=ext4&format=raw",
	}, {
		in:   "docker://nginx:1.27@sha256:" + hex64 + "?format=qcow2&filesystem=xfs",
		want: dockerurl.URL{Repository: "library/nginx", Tag: "1.27", Digest: "sha256:" + hex64, Filesystem: "xfs", Format: "qcow2"},
		ref:  "docker.io/library/nginx:1.27@sha256:" + hex64,
		str:  "docker://nginx:1.27@sha256:" + hex64 + "?filesystem=xfs&format=qcow2",
	}, {
		in:   "docker://127.0.0.1:5000/busybox?tag=musl&arch=arm64",
		want: dockerurl.URL{Registry: "127.0.0.1:5000", Repository: "busybox", Tag: "musl", Filesystem: "ext4", Format: "raw", Arch: "arm64"},
		ref:  "127.0.0.1:5000/busybox:musl",
		str:  "docker://127.0.0.1:5000/busybox:musl?filesystem=ext4&format=raw&arch=arm64",
	}, {
		in:   "docker://bitnami/redis:7?distro=debian&arch=aarch64&filesystem=ext2",
		want: dockerurl.URL{Repository: "bitnami/redis", Tag: "7", Filesystem: "ext2", Format: "raw", Distro: "debian", Arch: "arm64"},
		ref:  "docker.io/bitnami/redis:7",
		str:  "docker://bitnami/redis:7?filesystem=ext2&format=raw&distro=debian&arch=arm64",
	}, {
		in:   "docker://docker.io/library/alpine:3.20?tag=3.20&arch=linux/arm/v7",
		want: dockerurl.URL{Repository: "library/alpine", Tag: "3.20", Filesystem: "ext4", Format: "raw", Arch: "arm/v7"},
		ref:  "docker.io/library/alpine:3.20",
		str:  "docker://alpine:3.20?filesystem=ext4&format=raw&arch=arm%2Fv7",
	}, {
		in:   "docker://localhost/a/b/c?size=1&filesystem=ext3",
		want: dockerurl.URL{Registry: "localhost", Repository: "a/b/c", Tag: "latest", SizeMiB: 1, Filesystem: "ext3", Format: "raw"},
		ref:  "localhost/a/b/c:latest",
		str:  "docker://localhost/a/b/c:latest?size=1&filesystem=ext3&format=raw",
	}}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := dockerurl.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Parse:\n got %+v\nwant %+v", got, tt.want)
			}
			if r := got.Reference(); r != tt.ref {
				t.Errorf("Reference() = %q, want %q", r, tt.ref)
			}
			if _, err := name.ParseReference(got.Reference()); err != nil {
				t.Errorf("name.ParseReference(%q): %v", got.Reference(), err)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			again, err := dockerurl.Parse(got.String())
			if err != nil || again != got {
				t.Errorf("round trip: Parse(%q) = %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty docker URL"},
		{"nginx", `"nginx" is not a docker URL: it must start with docker://`},
		{"http://nginx", "must start with docker://"},
		{"docker://", "names no image"},
		{"docker://?size=5", "names no image"},
		{"docker://nginx?size=0", "invalid size=0: want a positive whole number of MiB"},
		{"docker://nginx?size=-5", "invalid size=-5"},
		{"docker://nginx?size=3G", "invalid size=3G"},
		{"docker://nginx?size=1.5", "invalid size=1.5"},
		{"docker://nginx?size=99999999999", "at most"},
		{"docker://nginx?filesystem=btrfs", "unsupported filesystem=btrfs: use ext2, ext3, ext4 or xfs"},
		{"docker://nginx?format=vmdk", "unsupported format=vmdk: use raw or qcow2"},
		{"docker://nginx?colour=blue", `unknown docker URL option "colour": allowed are size, filesystem, format, tag, distro, arch`},
		{"docker://nginx?b=1&a=2", `unknown docker URL option "a", "b"`},
		{"docker://nginx:alpine?tag=latest", `conflicting tags: "alpine" in the image name and tag=latest`},
		{"docker://nginx?tag=a&tag=b", "tag= given 2 times"},
		{"docker://nginx?tag=", "tag= is empty"},
		{"docker://nginx?tag=bad/tag", "invalid tag=bad/tag"},
		{"docker://nginx?arch=sparc", "unsupported arch=sparc"},
		{"docker://nginx?distro=a%20b", `invalid distro="a b"`},
		{"docker://nginx?size=%zz", "query"},
		{"docker://Nginx", `image "Nginx"`},
		{"docker://nginx:", "empty tag"},
		{"docker://nginx:bad$tag", `image "nginx:bad$tag"`},
		{"docker://nginx@md5:abc", "must be sha256:<64 hex digits>"},
		{"docker://nginx@sha256:abc", `image "nginx@sha256:abc"`},
		{"docker://nginx@sha256:" + hex64 + "@sha256:" + hex64, "image"},
		{"docker://a//b", `image "a//b"`},
		{"docker://my image", `image "my image"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := dockerurl.Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want error containing %q", tt.in, u, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) error %q, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"docker://nginx?size=3072&filesystem=ext4&format=raw&tag=alpine",
		"docker://registry.local:5000/team/app:1.2",
		"docker://nginx@sha256:" + hex64,
		"docker://127.0.0.1:5000/busybox?tag=musl&arch=arm64",
		"docker://docker.io/library/x:y?arch=linux/arm/v7&distro=alpine",
		"docker://localhost/a?size=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := dockerurl.Parse(s)
		if err != nil {
			return
		}
		again, err := dockerurl.Parse(u.String())
		if err != nil {
			t.Fatalf("Parse(%q) ok but Parse(String()=%q): %v", s, u.String(), err)
		}
		if again != u {
			t.Fatalf("round trip of %q via %q:\n got %+v\nwant %+v", s, u.String(), again, u)
		}
		if _, err := name.ParseReference(u.Reference()); err != nil {
			t.Fatalf("Reference() %q of %q does not parse: %v", u.Reference(), s, err)
		}
	})
}

func TestPickTag(t *testing.T) {
	for tags, want := range map[string]string{"": "latest", "v1,latest": "latest", "1.36,musl": "1.36"} {
		var ts []string
		if tags != "" {
			ts = strings.Split(tags, ",")
		}
		if got := dockerurl.PickTag(ts); got != want {
			t.Errorf("tags %q: %s, want %s", tags, got, want)
		}
	}
}
