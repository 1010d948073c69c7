package pgpverify_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/market-lxc/marketfake"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
)

func TestClearsignedAndDetached(t *testing.T) {
	s := marketfake.NewSigner(t, "Release Key")
	other := marketfake.NewSigner(t, "Other Key")
	keyring, err := pgpverify.ReadKeyring(append(s.PublicKey(t), other.PublicKey(t)...))
	if err != nil {
		t.Fatal(err)
	}
	if len(keyring.Fingerprints()) != 2 {
		t.Fatalf("fingerprints = %v", keyring.Fingerprints())
	}
	text := "line one\n- a dashed line\n      abc  file.tar.gz\n"
	doc := s.Clearsign(t, []byte(text))
	got, signer, err := keyring.Clearsigned(doc)
	if err != nil || string(got) != strings.TrimSuffix(text, "\n") && string(got) != text || signer != keyring.Fingerprints()[0] {
		t.Fatalf("Clearsigned = %q, %s, %v", got, signer, err)
	}
	// Text around the signed block is never returned.
	wrapped := append([]byte("      "+strings.Repeat("ab", 32)+"  evil.tar.gz\n"), doc...)
	wrapped = append(wrapped, []byte("\n"+strings.Repeat("cd", 32)+"  evil.tar.gz\n")...)
	if got, _, err := keyring.Clearsigned(wrapped); err != nil || bytes.Contains(got, []byte("evil")) {
		t.Fatalf("text around the block: %q, %v", got, err)
	}
	alone, err := pgpverify.ReadKeyring(other.PublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := alone.Clearsigned(doc); err == nil || !strings.Contains(err.Error(), "not in the configured keyring") {
		t.Errorf("unknown key: %v", err)
	}
	if _, _, err := keyring.Clearsigned(bytes.Replace(doc, []byte("line one"), []byte("line 1"), 1)); err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Errorf("changed text: %v", err)
	}
	if _, _, err := keyring.Clearsigned([]byte(text)); err == nil {
		t.Error("unsigned text accepted")
	}
	data := []byte("rootfs bytes")
	sig := s.Detach(t, data)
	if _, err := keyring.Detached(bytes.NewReader(data), sig); err != nil {
		t.Errorf("detached: %v", err)
	}
	if _, err := keyring.Detached(bytes.NewReader([]byte("rootfs bytez")), sig); err == nil {
		t.Error("detached signature of other bytes verified")
	}
	if _, err := alone.Detached(bytes.NewReader(data), sig); err == nil {
		t.Error("detached signature by an unknown key verified")
	}
}

func TestReadKeyringRefusals(t *testing.T) {
	for name, k := range map[string]string{
		"empty":       "",
		"garbage":     "hello",
		"no END":      "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n",
		"bad armor":   "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n-----END PGP PUBLIC KEY BLOCK-----\n",
		"huge":        strings.Repeat("a", pgpverify.MaxKeyring+1),
		"private key": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nabc\n-----END PGP PRIVATE KEY BLOCK-----\n",
	} {
		if _, err := pgpverify.ReadKeyring([]byte(k)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func FuzzClearsigned(f *testing.F) {
	s := marketfake.NewSigner(f, "Release Key")
	keyring, err := pgpverify.ReadKeyring(s.PublicKey(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.Clearsign(f, []byte("abc  file\n")))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nx\n-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		text, _, err := keyring.Clearsigned(doc)
		if err == nil && !bytes.Contains(doc, bytes.TrimSpace(text)) {
			t.Fatalf("verified text %q is not in the document", text)
		}
	})
}
