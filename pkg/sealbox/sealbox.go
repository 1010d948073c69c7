// Package sealbox seals a small secret to one recipient's X25519 public key,
// so it can cross a message bus that others may read: only the holder of the
// matching private key opens it.
//
// A sealed box is
//
//	version (1 byte) || ephemeral public key (32) || nonce (12) || AES-256-GCM ciphertext and tag
//
// The AES key is HKDF-SHA256 of the X25519 shared secret between a fresh
// ephemeral key and the recipient's key, salted with both public keys, so a
// box is bound to its recipient; the header is the GCM additional data, so
// no byte of the box can change unnoticed. Each box has its own ephemeral
// key: sealing the same plaintext twice gives unrelated boxes, and a leaked
// box says nothing about another.
//
// It is for the passphrases Slipway hands to launchers (crypto-luks'
// secret query): the asker makes a one-time key pair, sends the public half
// with the request and opens the answer with the private half.
package sealbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Version is the first byte of every box this package makes.
const Version byte = 1

// Sizes of the parts of a box.
const (
	KeySize   = 32 // X25519 public and private keys
	nonceSize = 12
	tagSize   = 16
	// Overhead is how many bytes a box adds to its plaintext.
	Overhead = 1 + KeySize + nonceSize + tagSize
)

// info separates this use of HKDF from any other use of the same keys.
const info = "slipway sealbox v1: X25519 HKDF-SHA256 AES-256-GCM"

// ErrOpen is returned when a box cannot be opened: it was sealed to another
// key, or it was altered, truncated or is not a box at all. The cases are
// not told apart, as an attacker could use the difference.
var ErrOpen = errors.New("sealbox: cannot open: wrong key, or the box was altered or is not a sealed box")

// GenerateKey makes a new X25519 key pair.
func GenerateKey() (*ecdh.PrivateKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sealbox: generate key: %w", err)
	}
	return k, nil
}

// ParsePublicKey reads a raw 32-byte X25519 public key.
func ParsePublicKey(raw []byte) (*ecdh.PublicKey, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("sealbox: public key is %d bytes, want %d (raw X25519)", len(raw), KeySize)
	}
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("sealbox: public key: %w", err)
	}
	return pub, nil
}

// ParsePublicKeyBase64 reads a raw X25519 public key in standard or URL
// base64, padded or not, as requests carry it.
func ParsePublicKeyBase64(s string) (*ecdh.PublicKey, error) {
	raw, err := decodeBase64(s)
	if err != nil {
		return nil, fmt.Errorf("sealbox: public key is not base64: %w", err)
	}
	return ParsePublicKey(raw)
}

// EncodePublicKey is the standard base64 of a public key's raw bytes.
func EncodePublicKey(pub *ecdh.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub.Bytes())
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// Seal encrypts plaintext so that only the holder of recipient's private
// key can read it.
func Seal(recipient *ecdh.PublicKey, plaintext []byte) ([]byte, error) {
	if recipient == nil {
		return nil, errors.New("sealbox: no recipient key")
	}
	if recipient.Curve() != ecdh.X25519() {
		return nil, errors.New("sealbox: recipient key is not an X25519 key")
	}
	eph, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	shared, err := eph.ECDH(recipient)
	if err != nil {
		// A low-order public key would make the shared secret known to all.
		return nil, fmt.Errorf("sealbox: recipient key: %w", err)
	}
	ephPub := eph.PublicKey().Bytes()
	aead, err := newAEAD(shared, ephPub, recipient.Bytes())
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+KeySize+nonceSize, Overhead+len(plaintext))
	out[0] = Version
	copy(out[1:], ephPub)
	if _, err := rand.Read(out[1+KeySize:]); err != nil {
		return nil, fmt.Errorf("sealbox: nonce: %w", err)
	}
	header := out[:1+KeySize+nonceSize]
	return aead.Seal(out, header[1+KeySize:], plaintext, header), nil
}

// Open decrypts a box sealed to priv's public key.
func Open(priv *ecdh.PrivateKey, sealed []byte) ([]byte, error) {
	if priv == nil {
		return nil, errors.New("sealbox: no private key")
	}
	if len(sealed) < Overhead || sealed[0] != Version {
		return nil, ErrOpen
	}
	ephPub, err := ecdh.X25519().NewPublicKey(sealed[1 : 1+KeySize])
	if err != nil {
		return nil, ErrOpen
	}
	shared, err := priv.ECDH(ephPub)
	if err != nil {
		return nil, ErrOpen
	}
	aead, err := newAEAD(shared, ephPub.Bytes(), priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	header := sealed[:1+KeySize+nonceSize]
	plain, err := aead.Open(nil, header[1+KeySize:], sealed[len(header):], header)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// newAEAD derives the box key from the shared secret, salted with both
// public keys (ephemeral first), so it is bound to this sender and
// recipient.
func newAEAD(shared, ephPub, recipientPub []byte) (cipher.AEAD, error) {
	salt := make([]byte, 0, 2*KeySize)
	salt = append(append(salt, ephPub...), recipientPub...)
	key, err := hkdf.Key(sha256.New, shared, salt, info, 32)
	if err != nil {
		return nil, fmt.Errorf("sealbox: derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealbox: %w", err)
	}
	return cipher.NewGCM(block)
}
