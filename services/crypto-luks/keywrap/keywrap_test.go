package keywrap

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func key(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKEKID(t *testing.T) {
	k := key(t)
	id := KEKID(k)
	if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("KEK ID %q is not 16 lower-case hex digits", id)
	}
	if KEKID(k) != id || KEKID(key(t)) == id {
		t.Fatal("KEK ID is not a function of the key")
	}
}

func TestSealOpenAndBinding(t *testing.T) {
	kr, err := New(key(t))
	if err != nil {
		t.Fatal(err)
	}
	dk, w, err := kr.NewDataKey("secret-a")
	if err != nil {
		t.Fatal(err)
	}
	if w.KEKID != kr.CurrentID() {
		t.Fatalf("wrapped by %s, want current %s", w.KEKID, kr.CurrentID())
	}
	ct, err := dk.Seal("slot-0", []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("hunter2")) {
		t.Fatal("ciphertext contains the plaintext")
	}
	dk2, err := kr.Unwrap("secret-a", w)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dk2.Open("slot-0", ct)
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("open: %q, %v", got, err)
	}
	// Another slot's label, another secret's wrapped key, a flipped bit.
	if _, err := dk2.Open("slot-1", ct); !errors.Is(err, ErrOpen) {
		t.Errorf("opened under another label: %v", err)
	}
	if _, err := kr.Unwrap("secret-b", w); !errors.Is(err, ErrOpen) {
		t.Errorf("data key of secret-a unwrapped as secret-b's: %v", err)
	}
	bad := bytes.Clone(ct)
	bad[len(bad)-1] ^= 1
	if _, err := dk2.Open("slot-0", bad); !errors.Is(err, ErrOpen) {
		t.Errorf("tampered ciphertext opened: %v", err)
	}
	badW := w
	badW.Key = bytes.Clone(w.Key)
	badW.Key[3] ^= 0x80
	if _, err := kr.Unwrap("secret-a", badW); !errors.Is(err, ErrOpen) {
		t.Errorf("tampered wrapped key unwrapped: %v", err)
	}
	other, _ := New(key(t))
	if _, err := other.Unwrap("secret-a", w); !errors.Is(err, ErrUnknownKEK) {
		t.Errorf("unwrapped with a keyring lacking the KEK: %v", err)
	}
	// A wrapped key relabelled with another KEK's ID must not open either.
	forged := Wrapped{KEKID: other.CurrentID(), Key: w.Key}
	if _, err := other.Unwrap("secret-a", forged); !errors.Is(err, ErrOpen) {
		t.Errorf("relabelled wrapped key: %v", err)
	}
}

func TestRewrapKeepsOldSecretsOpen(t *testing.T) {
	k1, k2 := key(t), key(t)
	old, _ := New(k1)
	dk, w, err := old.NewDataKey("s")
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := dk.Seal("slot-0", []byte("passphrase"))

	rotated, err := New(k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	if got := rotated.OldIDs(); len(got) != 1 || got[0] != KEKID(k1) {
		t.Fatalf("old IDs %v", got)
	}
	// Before re-wrapping, the old KEK still unwraps.
	if _, err := rotated.Unwrap("s", w); err != nil {
		t.Fatalf("old data key with the old KEK listed: %v", err)
	}
	nw, changed, err := rotated.Rewrap("s", w)
	if err != nil || !changed {
		t.Fatalf("rewrap: changed %v, %v", changed, err)
	}
	if nw.KEKID != KEKID(k2) || bytes.Equal(nw.Key, w.Key) {
		t.Fatalf("rewrapped under %s, want %s", nw.KEKID, KEKID(k2))
	}
	if _, changed, err := rotated.Rewrap("s", nw); err != nil || changed {
		t.Fatalf("second rewrap: changed %v, %v", changed, err)
	}
	// Only the new KEK now: the re-wrapped data key opens the same
	// passphrase ciphertext.
	only, _ := New(k2)
	dk2, err := only.Unwrap("s", nw)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dk2.Open("slot-0", ct); err != nil || string(got) != "passphrase" {
		t.Fatalf("after rotation: %q, %v", got, err)
	}
	if _, err := only.Unwrap("s", w); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("old wrapped key without the old KEK: %v", err)
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	if _, err := New([]byte("short")); err == nil {
		t.Error("5-byte KEK accepted")
	}
	if _, err := New(key(t), []byte("short")); err == nil {
		t.Error("5-byte old KEK accepted")
	}
	k := key(t)
	kr, err := New(k, k)
	if err != nil || len(kr.OldIDs()) != 0 {
		t.Errorf("current key listed as old too: %v %v", kr.OldIDs(), err)
	}
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask
		t.Fatal(err)
	}
	return p
}

func TestReadKEKFile(t *testing.T) {
	dir := t.TempDir()
	k := key(t)
	good := writeFile(t, dir, "good", base64.StdEncoding.EncodeToString(k)+"\n", 0o600)
	got, err := ReadKEKFile(good)
	if err != nil || !bytes.Equal(got, k) {
		t.Fatalf("good file: %v", err)
	}
	for name, c := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"group-readable": {base64.StdEncoding.EncodeToString(k), 0o640, "mode 0640"},
		"world-readable": {base64.StdEncoding.EncodeToString(k), 0o604, "chmod 600"},
		"not-base64":     {"this is not a key!", 0o600, "not base64"},
		"wrong-length":   {base64.StdEncoding.EncodeToString(k[:16]), 0o600, "decodes to 16 bytes"},
	} {
		p := writeFile(t, dir, name, c.content, c.mode)
		if _, err := ReadKEKFile(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one mentioning %q", name, err, c.want)
		}
	}
	if _, err := ReadKEKFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := key(t), key(t)
	f1 := writeFile(t, dir, "k1", base64.StdEncoding.EncodeToString(k1), 0o600)
	f2 := writeFile(t, dir, "k2", base64.URLEncoding.EncodeToString(k2), 0o400)

	t.Setenv(EnvKEK, "")
	t.Setenv(EnvKEKFile, "")
	t.Setenv(EnvOldKEKFiles, "")
	if _, err := FromEnv(""); !errors.Is(err, ErrNoKEK) {
		t.Fatalf("nothing set: %v", err)
	}

	t.Setenv(EnvKEK, base64.StdEncoding.EncodeToString(k1))
	kr, err := FromEnv("")
	if err != nil || kr.CurrentID() != KEKID(k1) {
		t.Fatalf("inline KEK: %v", err)
	}
	t.Setenv(EnvKEKFile, f2)
	if _, err := FromEnv(""); err == nil || !strings.Contains(err.Error(), "only one") {
		t.Fatalf("both set: %v", err)
	}
	t.Setenv(EnvKEK, "")
	t.Setenv(EnvOldKEKFiles, f1+", ")
	kr, err = FromEnv("")
	if err != nil || kr.CurrentID() != KEKID(k2) || !kr.Has(KEKID(k1)) {
		t.Fatalf("file + old: %v", err)
	}
	t.Setenv(EnvOldKEKFiles, filepath.Join(dir, "missing"))
	if _, err := FromEnv(""); err == nil || !strings.Contains(err.Error(), EnvOldKEKFiles) {
		t.Fatalf("missing old file: %v", err)
	}

	// The default file is made once, 0600, and reused.
	t.Setenv(EnvKEKFile, "")
	t.Setenv(EnvOldKEKFiles, "")
	def := filepath.Join(dir, "sub", "luks.kek")
	a, err := FromEnv(def)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(def)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("default KEK file: %v %v", fi.Mode(), err)
	}
	b, err := FromEnv(def)
	if err != nil || a.CurrentID() != b.CurrentID() {
		t.Fatalf("default KEK file not reused: %v", err)
	}
}
