// Package keywrap keeps crypto-luks' passphrases envelope-encrypted: each
// secret has its own random data key, which encrypts that secret's
// passphrases (AES-256-GCM), and the data key is stored only wrapped by the
// key-encryption key (KEK), also with AES-256-GCM. The KEK comes from
// configuration and never leaves the process; KV holds only wrapped keys and
// ciphertext.
//
// Every ciphertext is bound by its GCM additional data to where it belongs:
// a wrapped data key to its secret's UUID and its KEK's ID, a passphrase to
// its secret's UUID and its label (the key slot), so nothing can be moved
// from one record, slot or KEK to another without failing to open.
//
// KEK rotation: configure the new KEK as the current one and list the old
// ones (SLIPWAY_LUKS_OLD_KEK_FILES); Rewrap moves a data key from whichever
// KEK wrapped it to the current one. The data keys and the passphrases do
// not change, so images encrypted before still open.
package keywrap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Environment variables read by FromEnv.
const (
	// EnvKEK is the current KEK itself: base64 of 32 bytes.
	EnvKEK = "SLIPWAY_LUKS_KEK"
	// EnvKEKFile names a file holding the current KEK (base64 of 32 bytes),
	// readable by its owner only.
	EnvKEKFile = "SLIPWAY_LUKS_KEK_FILE"
	// EnvOldKEKFiles lists files of previous KEKs, comma separated, still
	// used to unwrap data keys not re-wrapped yet.
	EnvOldKEKFiles = "SLIPWAY_LUKS_OLD_KEK_FILES"
)

// KeySize is the size of a KEK and of a data key: AES-256.
const KeySize = 32

// Errors callers tell apart with errors.Is.
var (
	// ErrNoKEK: neither SLIPWAY_LUKS_KEK nor SLIPWAY_LUKS_KEK_FILE is set.
	ErrNoKEK = errors.New("no key-encryption key configured: set " + EnvKEK + " (base64 of 32 bytes) or " + EnvKEKFile)
	// ErrUnknownKEK: a data key was wrapped by a KEK this keyring lacks.
	ErrUnknownKEK = errors.New("wrapped by a key-encryption key that is not configured")
	// ErrOpen: a ciphertext failed authentication (wrong key, altered, or
	// moved from another secret or slot).
	ErrOpen = errors.New("cannot decrypt: wrong key, or the data was altered or belongs to another secret")
)

// Additional-data prefixes: a wrapped data key and a passphrase can never
// be mistaken for one another.
const (
	aadWrap = "slipway crypto-luks data key v1\x00"
	aadData = "slipway crypto-luks secret v1\x00"
)

// KEKID names a KEK without revealing it: the first 16 hex digits of the
// SHA-256 of the key.
func KEKID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

type kek struct {
	id   string
	aead cipher.AEAD
}

// Keyring holds the current KEK, which wraps every new or re-wrapped data
// key, and the old ones, which only unwrap.
type Keyring struct {
	current kek
	old     []kek
}

// New makes a keyring from raw 32-byte keys. An old key equal to the current
// one is ignored.
func New(current []byte, old ...[]byte) (*Keyring, error) {
	cur, err := newKEK(current)
	if err != nil {
		return nil, fmt.Errorf("current KEK: %w", err)
	}
	k := &Keyring{current: cur}
	for i, o := range old {
		ok, err := newKEK(o)
		if err != nil {
			return nil, fmt.Errorf("old KEK %d: %w", i+1, err)
		}
		if ok.id != cur.id && !slices.ContainsFunc(k.old, func(x kek) bool { return x.id == ok.id }) {
			k.old = append(k.old, ok)
		}
	}
	return k, nil
}

func newKEK(key []byte) (kek, error) {
	if len(key) != KeySize {
		return kek{}, fmt.Errorf("a KEK is %d bytes, this one is %d", KeySize, len(key))
	}
	aead, err := newGCM(key)
	if err != nil {
		return kek{}, err
	}
	return kek{id: KEKID(key), aead: aead}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// CurrentID is the ID of the KEK that wraps new data keys.
func (k *Keyring) CurrentID() string { return k.current.id }

// OldIDs are the IDs of the KEKs that only unwrap.
func (k *Keyring) OldIDs() []string {
	ids := make([]string, len(k.old))
	for i, o := range k.old {
		ids[i] = o.id
	}
	return ids
}

// Has reports whether the keyring can unwrap data keys wrapped by id.
func (k *Keyring) Has(id string) bool {
	_, ok := k.find(id)
	return ok
}

func (k *Keyring) find(id string) (kek, bool) {
	if id == k.current.id {
		return k.current, true
	}
	for _, o := range k.old {
		if o.id == id {
			return o, true
		}
	}
	return kek{}, false
}

// Wrapped is a data key as it is stored: encrypted by the KEK named KEKID.
type Wrapped struct {
	KEKID string `json:"kek_id"`
	// Key is nonce || AES-256-GCM ciphertext of the data key (base64 in
	// JSON).
	Key []byte `json:"wrapped_key"`
}

// DataKey encrypts one secret's passphrases. It is only ever held in
// memory; what is stored is its Wrapped form.
type DataKey struct {
	secret string
	aead   cipher.AEAD
}

// NewDataKey makes a random data key for secret (its UUID) and returns it
// with its form wrapped by the current KEK.
func (k *Keyring) NewDataKey(secret string) (DataKey, Wrapped, error) {
	if secret == "" {
		return DataKey{}, Wrapped{}, errors.New("keywrap: empty secret ID")
	}
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return DataKey{}, Wrapped{}, fmt.Errorf("keywrap: data key: %w", err)
	}
	w, err := k.wrap(secret, raw)
	if err != nil {
		return DataKey{}, Wrapped{}, err
	}
	dk, err := dataKey(secret, raw)
	return dk, w, err
}

func dataKey(secret string, raw []byte) (DataKey, error) {
	aead, err := newGCM(raw)
	if err != nil {
		return DataKey{}, fmt.Errorf("keywrap: %w", err)
	}
	return DataKey{secret: secret, aead: aead}, nil
}

func (k *Keyring) wrap(secret string, raw []byte) (Wrapped, error) {
	ct, err := seal(k.current.aead, raw, wrapAAD(secret, k.current.id))
	if err != nil {
		return Wrapped{}, err
	}
	return Wrapped{KEKID: k.current.id, Key: ct}, nil
}

func wrapAAD(secret, kekID string) []byte {
	return []byte(aadWrap + secret + "\x00" + kekID)
}

// unwrapRaw returns the raw data key of secret.
func (k *Keyring) unwrapRaw(secret string, w Wrapped) ([]byte, error) {
	key, ok := k.find(w.KEKID)
	if !ok {
		return nil, fmt.Errorf("secret %s: data key %w (KEK %s; configured: %s)", secret, ErrUnknownKEK, w.KEKID, strings.Join(append([]string{k.current.id}, k.OldIDs()...), ", "))
	}
	raw, err := open(key.aead, w.Key, wrapAAD(secret, w.KEKID))
	if err != nil {
		return nil, fmt.Errorf("secret %s: unwrap data key with KEK %s: %w", secret, w.KEKID, err)
	}
	return raw, nil
}

// Unwrap returns secret's data key.
func (k *Keyring) Unwrap(secret string, w Wrapped) (DataKey, error) {
	raw, err := k.unwrapRaw(secret, w)
	if err != nil {
		return DataKey{}, err
	}
	return dataKey(secret, raw)
}

// Rewrap wraps secret's data key with the current KEK. It reports false,
// and returns w as it is, when the current KEK wraps it already. The data
// key itself does not change, so what it encrypted still opens.
func (k *Keyring) Rewrap(secret string, w Wrapped) (Wrapped, bool, error) {
	if w.KEKID == k.current.id {
		// Still check that it opens: a rotation must not report success
		// over a record it could not read.
		if _, err := k.unwrapRaw(secret, w); err != nil {
			return w, false, err
		}
		return w, false, nil
	}
	raw, err := k.unwrapRaw(secret, w)
	if err != nil {
		return w, false, err
	}
	nw, err := k.wrap(secret, raw)
	return nw, err == nil, err
}

// Seal encrypts plaintext under the data key, bound to label (the key
// slot, say): it opens only with the same secret's key and the same label.
func (d DataKey) Seal(label string, plaintext []byte) ([]byte, error) {
	if d.aead == nil {
		return nil, errors.New("keywrap: zero data key")
	}
	return seal(d.aead, plaintext, d.aad(label))
}

// Open decrypts what Seal made with the same label.
func (d DataKey) Open(label string, ciphertext []byte) ([]byte, error) {
	if d.aead == nil {
		return nil, errors.New("keywrap: zero data key")
	}
	p, err := open(d.aead, ciphertext, d.aad(label))
	if err != nil {
		return nil, fmt.Errorf("secret %s (%s): %w", d.secret, label, err)
	}
	return p, nil
}

func (d DataKey) aad(label string) []byte {
	return []byte(aadData + d.secret + "\x00" + label)
}

func seal(aead cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keywrap: nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

func open(aead cipher.AEAD, ct, aad []byte) ([]byte, error) {
	n := aead.NonceSize()
	if len(ct) < n+aead.Overhead() {
		return nil, ErrOpen
	}
	p, err := aead.Open(nil, ct[:n], ct[n:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return p, nil
}

// FromEnv builds the keyring from SLIPWAY_LUKS_KEK or SLIPWAY_LUKS_KEK_FILE
// (the first set wins; both set is refused as ambiguous) and
// SLIPWAY_LUKS_OLD_KEK_FILES. With neither current variable set it returns
// ErrNoKEK, or, when defaultFile is not empty, uses that file, creating it
// with a new random KEK (mode 0600) if it does not exist.
func FromEnv(defaultFile string) (*Keyring, error) {
	inline := strings.TrimSpace(os.Getenv(EnvKEK))
	file := strings.TrimSpace(os.Getenv(EnvKEKFile))
	var current []byte
	var err error
	switch {
	case inline != "" && file != "":
		return nil, fmt.Errorf("both %s and %s are set: set only one", EnvKEK, EnvKEKFile)
	case inline != "":
		if current, err = ParseKEK(inline); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKEK, err)
		}
	case file != "":
		if current, err = ReadKEKFile(file); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKEKFile, err)
		}
	case defaultFile != "":
		if err := EnsureKEKFile(defaultFile); err != nil {
			return nil, err
		}
		if current, err = ReadKEKFile(defaultFile); err != nil {
			return nil, err
		}
	default:
		return nil, ErrNoKEK
	}
	var old [][]byte
	for _, f := range strings.Split(os.Getenv(EnvOldKEKFiles), ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		key, err := ReadKEKFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvOldKEKFiles, err)
		}
		old = append(old, key)
	}
	return New(current, old...)
}

// ParseKEK reads a KEK written as base64 (standard or URL, padded or not)
// of exactly 32 bytes.
func ParseKEK(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	key, err := enc.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("a KEK is written as base64 of %d random bytes (e.g. `head -c 32 /dev/urandom | base64`); this is not base64: %w", KeySize, err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("a KEK is base64 of %d bytes; this decodes to %d bytes", KeySize, len(key))
	}
	return key, nil
}

// ReadKEKFile reads a KEK file: base64 of 32 bytes. A file that its group
// or others may read or write is refused, as is anything but a regular
// file.
func ReadKEKFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("KEK file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("KEK file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("KEK file %s has mode %04o: its group or others may read or change it; make it readable by its owner only (chmod 600 %s)", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("KEK file: %w", err)
	}
	key, err := ParseKEK(string(data))
	if err != nil {
		return nil, fmt.Errorf("KEK file %s: %w", path, err)
	}
	return key, nil
}

// EnsureKEKFile creates path with a new random KEK, mode 0600, unless it
// exists (then it is left alone; ReadKEKFile checks it). Its directory is
// made 0700 if missing.
func EnsureKEKFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("KEK file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("KEK file: %w", err)
	}
	return WriteKEKFile(path)
}

// WriteKEKFile writes a new random KEK to path, which must not exist, with
// mode 0600.
func WriteKEKFile(path string) error {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("new KEK: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("new KEK file: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("new KEK file %s: %w", path, err)
	}
	return nil
}
