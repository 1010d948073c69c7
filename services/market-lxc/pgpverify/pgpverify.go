// Package pgpverify checks OpenPGP signatures of marketplace files against a
// configured keyring: TurnKey's clearsigned <file>.hash documents and the
// detached .asc signatures of the LXC download server and of aplinfo.dat.
//
// Only the signed text of a clearsigned document is returned: whatever a
// server puts around the signed block is never read by a caller.
package pgpverify

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
)

// MaxKeyring caps an armored keyring.
const MaxKeyring = 1 << 20

// Keyring is a set of trusted public keys.
type Keyring struct {
	entities openpgp.EntityList
}

// ReadKeyring reads one or more armored public key blocks. A keyring with no
// key, or one holding a private key, is an error: a marketplace is configured
// with public keys only.
func ReadKeyring(armored []byte) (*Keyring, error) {
	if len(armored) > MaxKeyring {
		return nil, fmt.Errorf("keyring: larger than %d bytes", MaxKeyring)
	}
	var all openpgp.EntityList
	rest := armored
	for len(bytes.TrimSpace(rest)) > 0 {
		i := bytes.Index(rest, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"))
		if i < 0 {
			if len(all) == 0 {
				return nil, errors.New("keyring: no armored public key block")
			}
			break
		}
		rest = rest[i:]
		end := bytes.Index(rest, []byte("-----END PGP PUBLIC KEY BLOCK-----"))
		if end < 0 {
			return nil, errors.New("keyring: public key block without its END line")
		}
		end += len("-----END PGP PUBLIC KEY BLOCK-----")
		el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(rest[:end]))
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		all = append(all, el...)
		rest = rest[end:]
	}
	if len(all) == 0 {
		return nil, errors.New("keyring: no key")
	}
	for _, e := range all {
		if e.PrivateKey != nil {
			return nil, fmt.Errorf("keyring: key %X holds a private key; configure public keys only", e.PrimaryKey.Fingerprint)
		}
	}
	return &Keyring{entities: all}, nil
}

// Fingerprints are the upper-case hex fingerprints of the primary keys.
func (k *Keyring) Fingerprints() []string {
	var out []string
	for _, e := range k.entities {
		out = append(out, fmt.Sprintf("%X", e.PrimaryKey.Fingerprint))
	}
	return out
}

// Clearsigned verifies the clearsigned document doc and returns its signed
// text (dash-escaping removed, line endings as signed) and the signer's
// fingerprint. A document that is not clearsigned, a signature by a key
// outside the keyring, or a bad signature is an error.
func (k *Keyring) Clearsigned(doc []byte) (text []byte, signer string, err error) {
	block, _ := clearsign.Decode(doc)
	if block == nil {
		return nil, "", errors.New("not a clearsigned document (no BEGIN PGP SIGNED MESSAGE block)")
	}
	if block.ArmoredSignature == nil {
		return nil, "", errors.New("clearsigned document without a signature")
	}
	// VerifySignature also checks the Hash header against the signature.
	e, err := block.VerifySignature(k.entities, nil)
	if err != nil {
		return nil, "", signatureErr(err)
	}
	return block.Plaintext, fmt.Sprintf("%X", e.PrimaryKey.Fingerprint), nil
}

// Detached verifies the armored detached signature sig of the bytes read
// from signed (read to its end: callers tee a download into it) and returns
// the signer's fingerprint.
func (k *Keyring) Detached(signed io.Reader, sig []byte) (string, error) {
	e, err := openpgp.CheckArmoredDetachedSignature(k.entities, signed, bytes.NewReader(sig), nil)
	if err != nil {
		return "", signatureErr(err)
	}
	return fmt.Sprintf("%X", e.PrimaryKey.Fingerprint), nil
}

func signatureErr(err error) error {
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return fmt.Errorf("signed by a key that is not in the configured keyring: %w", err)
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		return fmt.Errorf("the signature has expired: %w", err)
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return fmt.Errorf("the signing key has expired: %w", err)
	}
	var se pgperrors.SignatureError
	if errors.As(err, &se) {
		return fmt.Errorf("bad signature: %w", err)
	}
	return fmt.Errorf("signature does not verify: %w", err)
}
