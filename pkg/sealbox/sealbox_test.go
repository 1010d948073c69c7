package sealbox

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"
)

func mustKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := mustKey(t)
	for _, msg := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("passphrase"), 1000)} {
		box, err := Seal(k.PublicKey(), msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(box) != len(msg)+Overhead {
			t.Errorf("box of %d bytes is %d bytes, want %d", len(msg), len(box), len(msg)+Overhead)
		}
		if len(msg) > 4 && bytes.Contains(box, msg[:len(msg)/2]) {
			t.Error("the box contains the plaintext")
		}
		got, err := Open(k, box)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("opened %q, want %q", got, msg)
		}
	}
}

func TestSealTwiceDiffers(t *testing.T) {
	k := mustKey(t)
	a, _ := Seal(k.PublicKey(), []byte("same"))
	b, _ := Seal(k.PublicKey(), []byte("same"))
	if bytes.Equal(a, b) {
		t.Fatal("two boxes of the same plaintext are equal: no fresh ephemeral key or nonce")
	}
}

func TestOpenWrongKey(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	box, err := Seal(k.PublicKey(), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(other, box); !errors.Is(err, ErrOpen) {
		t.Fatalf("open with another key: err %v, want ErrOpen", err)
	}
}

func TestOpenTampered(t *testing.T) {
	k := mustKey(t)
	box, err := Seal(k.PublicKey(), []byte("secret passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	// Every single bit flipped anywhere (version, ephemeral key, nonce,
	// ciphertext, tag) must be caught.
	for i := range box {
		for bit := range 8 {
			bad := bytes.Clone(box)
			bad[i] ^= 1 << bit
			if got, err := Open(k, bad); err == nil {
				t.Fatalf("byte %d bit %d flipped: opened %q", i, bit, got)
			}
		}
	}
	for _, n := range []int{0, 1, Overhead - 1, len(box) - 1} {
		if _, err := Open(k, box[:n]); !errors.Is(err, ErrOpen) {
			t.Errorf("truncated to %d bytes: err %v, want ErrOpen", n, err)
		}
	}
	if _, err := Open(k, append(bytes.Clone(box), 0)); !errors.Is(err, ErrOpen) {
		t.Errorf("extended by a byte: err %v, want ErrOpen", err)
	}
}

func TestSealRefusesBadKeys(t *testing.T) {
	if _, err := Seal(nil, []byte("x")); err == nil {
		t.Error("nil key accepted")
	}
	// A low-order point makes the shared secret all zeros.
	zero, err := ParsePublicKey(make([]byte, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Seal(zero, []byte("x")); err == nil {
		t.Error("sealed to the all-zero (low-order) public key")
	}
	p256, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Seal(p256.PublicKey(), []byte("x")); err == nil {
		t.Error("sealed to a P-256 key")
	}
	if _, err := ParsePublicKey([]byte("short")); err == nil {
		t.Error("5-byte public key accepted")
	}
}

func TestPublicKeyBase64(t *testing.T) {
	k := mustKey(t)
	s := EncodePublicKey(k.PublicKey())
	for _, form := range []string{s, s[:len(s)-1], " " + s + "\n"} {
		pub, err := ParsePublicKeyBase64(form)
		if err != nil {
			t.Fatalf("%q: %v", form, err)
		}
		if !pub.Equal(k.PublicKey()) {
			t.Fatalf("%q: parsed a different key", form)
		}
	}
	if _, err := ParsePublicKeyBase64("not base64 !!"); err == nil {
		t.Error("garbage accepted as a public key")
	}
}
