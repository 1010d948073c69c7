package marketfake

import (
	"bytes"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// Signer is an OpenPGP key a fake signs with, generated for the test.
type Signer struct {
	entity *openpgp.Entity
}

// NewSigner generates a signing key named name (e.g. a release key's user id).
func NewSigner(t testing.TB, name string) *Signer {
	t.Helper()
	e, err := openpgp.NewEntity(name, "marketfake", "release@marketfake.invalid", nil)
	mustf(t, err, "generate key %q", name)
	return &Signer{entity: e}
}

// PublicKey is the armored public key: the keyring a test configures.
func (s *Signer) PublicKey(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	mustf(t, err, "armor")
	mustf(t, s.entity.Serialize(w), "serialize public key")
	mustf(t, w.Close(), "armor close")
	return buf.Bytes()
}

// Clearsign is text as a clearsigned document, as `gpg --clearsign` writes.
func (s *Signer) Clearsign(t testing.TB, text []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := clearsign.Encode(&buf, s.entity.PrivateKey, nil)
	mustf(t, err, "clearsign")
	_, err = w.Write(text)
	mustf(t, err, "clearsign write")
	mustf(t, w.Close(), "clearsign close")
	return buf.Bytes()
}

// Detach is the armored detached signature of data (`gpg --armor
// --detach-sign`, the .asc files).
func (s *Signer) Detach(t testing.TB, data []byte) []byte {
	t.Helper()
	sig, err := s.detach(data)
	mustf(t, err, "detach-sign")
	return sig
}

func (s *Signer) detach(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	err := openpgp.ArmoredDetachSign(&buf, s.entity, bytes.NewReader(data), nil)
	return buf.Bytes(), err
}
