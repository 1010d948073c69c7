// Package keywraptest makes the key-encryption keys and keyrings that
// tests run crypto-luks with.
package keywraptest

import (
	"crypto/rand"
	"testing"

	"github.com/slipway/slipway/services/crypto-luks/keywrap"
)

// Key is a new random key-encryption key.
func Key(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, keywrap.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// New is the keyring of keys, the first the current one, the others old
// ones it still unwraps with; without keys, of one new Key.
func New(t testing.TB, keys ...[]byte) *keywrap.Keyring {
	t.Helper()
	if len(keys) == 0 {
		keys = [][]byte{Key(t)}
	}
	kr, err := keywrap.New(keys[0], keys[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}
