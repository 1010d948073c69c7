// Package publishedtest holds what the tests of the private marketplaces
// share: blobs, apps and the hostile index documents every lister must
// refuse.
package publishedtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/slipway/slipway/services/market-lxc/published"
)

// SHA256 is the hex SHA-256 of b.
func SHA256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// Payload is n bytes that differ with seed.
func Payload(seed string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed[i%len(seed)]
	}
	return b
}

// App is an app to publish with data as its blob, in format.
func App(name, format string, data []byte) published.App {
	return published.App{
		Name: name, Version: "2.1", Format: format, Size: int64(len(data)), SHA256: SHA256(data),
		VirtualSize: 1 << 30, Description: "test app " + name, Publisher: "Slipway tests",
		VMTemplate: "CPU = 1\nMEMORY = 512\n",
	}
}

// Hostile is an index document a lister must refuse, with what its error
// must say.
type Hostile struct {
	Name, Doc, Want string
}

// HostileIndexes are index documents a hostile marketplace could serve:
// blob paths that escape the base or name another host or bucket, names
// with ".." or '/', wrong types, and one larger than a reader accepts.
func HostileIndexes() []Hostile {
	entry := func(name, blob string) string {
		return fmt.Sprintf(`{"name":%q,"version":"1","format":"raw","size":3,"sha256":"%s","created":"2026-01-01T00:00:00Z","blob":%q}`,
			name, SHA256([]byte("abc")), blob)
	}
	index := func(apps ...string) string { return `{"format_version":1,"apps":[` + strings.Join(apps, ",") + `]}` }
	return []Hostile{
		{"escaping blob path", index(entry("a", "../../secret")), `blob "../../secret": must be "apps/a/disk.raw"`},
		{"blob on another host", index(entry("a", "http://169.254.169.254/latest")), "must be"},
		{"blob in another bucket", index(entry("a", "s3://other/x")), "must be"},
		{"name ..", index(entry("..", "apps/../disk.raw")), `app name ".."`},
		{"name with ..", index(entry("a..b", "apps/a..b/disk.raw")), `must not contain ".."`},
		{"name with a slash", index(entry("a/b", "apps/a/b/disk.raw")), `'/' is not allowed`},
		{"wrong types", `{"format_version":"1","apps":"all"}`, "format_version"},
		{"size of the wrong type", strings.Replace(index(entry("a", "apps/a/disk.raw")), `"size":3`, `"size":"3"`, 1), "size"},
		{"huge", `{"format_version":1,"apps":[],"x":"` + strings.Repeat("a", published.MaxIndexBytes) + `"}`, "larger than"},
	}
}
