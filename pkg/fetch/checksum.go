package fetch

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"strings"
)

// Digest algorithms a checksum may name.
const (
	MD5    = "md5"
	SHA256 = "sha256"
	SHA512 = "sha512"
)

// algorithms are the supported digests with their sizes, in the order
// checksums are checked and reported.
var algorithms = []struct {
	name string
	size int
	new  func() hash.Hash
}{
	{MD5, md5.Size, md5.New},
	{SHA256, sha256.Size, sha256.New},
	{SHA512, sha512.Size, sha512.New},
}

// Checksum is one expected digest of the bytes as fetched.
type Checksum struct {
	Algorithm string // MD5, SHA256 or SHA512
	Hex       string // lower-case
}

func (c Checksum) String() string { return c.Algorithm + ":" + c.Hex }

// ParseChecksum reads "<algorithm>:<hex>" (md5, sha256 or sha512, hex of
// the algorithm's length, either case).
func ParseChecksum(s string) (Checksum, error) {
	algo, digest, _ := strings.Cut(s, ":")
	algo, digest = strings.ToLower(algo), strings.ToLower(digest)
	for _, a := range algorithms {
		if a.name != algo {
			continue
		}
		if b, err := hex.DecodeString(digest); err != nil || len(b) != a.size {
			return Checksum{}, permanentf("checksum %q: want \"%s:<%d hex digits>\"", s, algo, 2*a.size)
		}
		return Checksum{Algorithm: algo, Hex: digest}, nil
	}
	return Checksum{}, permanentf("checksum %q: want md5:<32>, sha256:<64> or sha512:<128 hex digits>", s)
}

// ParseChecksums reads every non-empty entry of list. Two digests of the
// same algorithm are refused unless they are the same digest (a command's
// checksum repeated in its checksums).
func ParseChecksums(list ...string) ([]Checksum, error) {
	var out []Checksum
	seen := map[string]string{}
	for _, s := range list {
		if s == "" {
			continue
		}
		c, err := ParseChecksum(s)
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[c.Algorithm]; ok {
			if prev != c.Hex {
				return nil, permanentf("two %s checksums given (%s:%s and %s): give one per algorithm", c.Algorithm, c.Algorithm, prev, c)
			}
			continue
		}
		seen[c.Algorithm] = c.Hex
		out = append(out, c)
	}
	return out, nil
}

// digests hashes the fetched bytes with SHA-256 (always: Result reports
// it) and every other algorithm a checksum names, in one pass.
type digests struct {
	names  []string
	hashes []hash.Hash
}

func newDigests(want []Checksum) *digests {
	d := &digests{}
	for _, a := range algorithms {
		if a.name == SHA256 || hasAlgorithm(want, a.name) {
			d.names = append(d.names, a.name)
			d.hashes = append(d.hashes, a.new())
		}
	}
	return d
}

func hasAlgorithm(cs []Checksum, algo string) bool {
	for _, c := range cs {
		if c.Algorithm == algo {
			return true
		}
	}
	return false
}

func (d *digests) Write(p []byte) {
	for _, h := range d.hashes {
		h.Write(p)
	}
}

// sums returns the hex digests by algorithm.
func (d *digests) sums() map[string]string {
	m := make(map[string]string, len(d.names))
	for i, n := range d.names {
		m[n] = hex.EncodeToString(d.hashes[i].Sum(nil))
	}
	return m
}

// verify returns a ChecksumError for the first expected digest that got
// does not match, in the order given.
func verify(src string, want []Checksum, got map[string]string) error {
	for _, c := range want {
		if got[c.Algorithm] != c.Hex {
			return &ChecksumError{Source: src, Expected: c.String(), Actual: c.Algorithm + ":" + got[c.Algorithm]}
		}
	}
	return nil
}
