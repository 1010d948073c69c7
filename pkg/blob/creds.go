package blob

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Keys are an S3 access key pair as Slipway keeps it in a file (one file a
// service, written by provisioning; 0600).
type Keys struct {
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

// ReadKeys reads a keys file and refuses one without both keys.
func ReadKeys(path string) (Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Keys{}, fmt.Errorf("s3 keys: %w", err)
	}
	var k Keys
	if err := json.Unmarshal(b, &k); err != nil {
		return Keys{}, fmt.Errorf("s3 keys %s: %w", path, err)
	}
	if k.AccessKey == "" || k.SecretKey == "" {
		return Keys{}, fmt.Errorf("s3 keys %s: want access_key and secret_key", path)
	}
	return k, nil
}

// WriteKeys writes a keys file, 0600, replacing it whole (a reader never
// sees half a file).
func WriteKeys(path string, k Keys) error {
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("s3 keys: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keys-*")
	if err != nil {
		return fmt.Errorf("s3 keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("s3 keys %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("s3 keys %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("s3 keys %s: %w", path, err)
	}
	return nil
}

// WithKeys is cfg acting with k.
func (c Config) WithKeys(k Keys) Config {
	c.AccessKey, c.SecretKey, c.SessionToken = k.AccessKey, k.SecretKey, ""
	return c
}
