package ovf

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Manifest is a parsed .mf: the expected digest of each file by name.
type Manifest map[string]Digest

// Digest is one line of a manifest: an algorithm (SHA1, SHA256, SHA512)
// and its lower-case hex digest.
type Digest struct {
	Algorithm string
	Hex       string
}

// MaxManifestBytes caps a manifest.
const MaxManifestBytes = 64 << 10

var manifestLine = regexp.MustCompile(`^(SHA1|SHA256|SHA512)\((.+)\)\s*=\s*([0-9a-fA-F]+)$`)

var digestLength = map[string]int{"SHA1": 40, "SHA256": 64, "SHA512": 128}

// ParseManifest reads a manifest: lines "SHA1(file)= hex" or
// "SHA256(file)= hex" (SHA512 too). Every name must be a plain file name
// (CheckName) listed once.
func ParseManifest(r io.Reader) (Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the manifest: %w", err)
	}
	if len(data) > MaxManifestBytes {
		return nil, invalid("the manifest is larger than %d bytes", MaxManifestBytes)
	}
	m := Manifest{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		g := manifestLine.FindStringSubmatch(line)
		if g == nil {
			return nil, invalid("manifest line %d is not SHA1(file)= hex or SHA256(file)= hex", n)
		}
		algo, name, sum := g[1], g[2], strings.ToLower(g[3])
		if err := CheckName(name); err != nil {
			return nil, invalid("manifest line %d: %v", n, err)
		}
		if len(sum) != digestLength[algo] {
			return nil, invalid("manifest line %d: a %s digest has %d hex digits, not %d", n, algo, digestLength[algo], len(sum))
		}
		if _, dup := m[name]; dup {
			return nil, invalid("manifest line %d lists %s a second time", n, name)
		}
		m[name] = Digest{Algorithm: algo, Hex: sum}
	}
	return m, nil
}

// Hasher computes, while a file is copied, the digests a manifest may
// name.
type Hasher struct {
	hashes map[string]hash.Hash
	w      io.Writer
	n      int64
}

// NewHasher returns a Hasher of SHA1, SHA256 and SHA512.
func NewHasher() *Hasher {
	h := &Hasher{hashes: map[string]hash.Hash{"SHA1": sha1.New(), "SHA256": sha256.New(), "SHA512": sha512.New()}}
	h.w = io.MultiWriter(h.hashes["SHA1"], h.hashes["SHA256"], h.hashes["SHA512"])
	return h
}

func (h *Hasher) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.n += int64(n)
	return n, err
}

// Len is how many bytes were hashed.
func (h *Hasher) Len() int64 { return h.n }

// Sums are the hex digests by algorithm.
func (h *Hasher) Sums() map[string]string {
	out := make(map[string]string, len(h.hashes))
	for a, x := range h.hashes {
		out[a] = hex.EncodeToString(x.Sum(nil))
	}
	return out
}

// Verify checks the digests of every file the manifest lists: sums maps a
// file name of the package to its digests by algorithm (Hasher.Sums). A
// listed file the package lacks, or whose digest differs, is an error
// naming it.
func (m Manifest) Verify(sums map[string]map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(m)) {
		want := m[name]
		got, ok := sums[name]
		if !ok {
			return invalid("the manifest lists %s, which the package does not hold", name)
		}
		if got[want.Algorithm] != want.Hex {
			return invalid("manifest mismatch for %s: %s expected %s, actual %s", name, want.Algorithm, want.Hex, got[want.Algorithm])
		}
	}
	return nil
}
