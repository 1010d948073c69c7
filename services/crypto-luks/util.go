package cryptoluks

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
)

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// hashFile describes a local copy of bucket/key as blob.Put would.
func (s *Service) hashFile(path, bucket, key string) (blob.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return blob.Info{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return blob.Info{}, err
	}
	return blob.Info{Bucket: bucket, Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
