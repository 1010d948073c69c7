package marketfake

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TurnKeyApp is one appliance a TurnKey fake serves.
type TurnKeyApp struct {
	App      string // "domain-controller"
	Debian   int    // 12
	Version  string // "18.0"
	Revision int    // 1
	Arch     string // "amd64"
	Rootfs   []byte // the .tar.gz
}

// FileName is debian-<N>-turnkey-<app>_<version>-<revision>_<arch>.tar.gz.
func (a TurnKeyApp) FileName() string {
	return fmt.Sprintf("debian-%d-turnkey-%s_%s-%d_%s.tar.gz", a.Debian, a.App, a.Version, a.Revision, a.Arch)
}

// HashProblem is how a fake spoils an app's .hash document.
type HashProblem int

// The ways a .hash can be wrong.
const (
	HashOK           HashProblem = iota
	HashBadSignature             // the signed text changed after signing
	HashUnsigned                 // the text without its clearsignature
	HashOtherKey                 // signed by a key that is not the fake's Signer
	HashWrongFile                // signed, but its sums name another file
	HashMissing                  // 404
)

// TurnKey fakes TurnKey Linux's Proxmox channel: pve/aplinfo.dat (+ .asc)
// and the mirror's images/proxmox/ directory with tarballs and clearsigned
// .hash files. Locations are absolute URLs, as TurnKey writes them.
type TurnKey struct {
	control
	URL      string  // the server's root, ending in "/"
	IndexURL string  // URL + "pve/aplinfo.dat"
	Signer   *Signer // signs the .hash and .asc files; PublicKey is the keyring
	apps     []TurnKeyApp
}

// NewTurnKey serves apps on loopback.
func NewTurnKey(t testing.TB, apps ...TurnKeyApp) *TurnKey {
	t.Helper()
	k := &TurnKey{control: newControl(), Signer: NewSigner(t, "TurnKey Linux Release Key"), apps: apps}
	srv := start(t, http.HandlerFunc(k.serve))
	k.URL = srv.URL + "/"
	k.IndexURL = k.URL + "pve/aplinfo.dat"
	for _, a := range apps {
		checkToken(t, "app", a.App)
		checkToken(t, "version", a.Version)
		checkToken(t, "arch", a.Arch)
		k.put(k.path(a), a.Rootfs)
		k.SetHash(t, a.App, HashOK)
	}
	return k
}

func (k *TurnKey) path(a TurnKeyApp) string { return "turnkeylinux/images/proxmox/" + a.FileName() }

func (k *TurnKey) app(t testing.TB, name string) TurnKeyApp {
	t.Helper()
	for _, a := range k.apps {
		if a.App == name {
			return a
		}
	}
	t.Fatalf("marketfake: no TurnKey app %q", name)
	return TurnKeyApp{}
}

// hashText is the text TurnKey's buildtasks write into <file>.hash.
func hashText(file, keyURL string, data []byte) string {
	s256 := sum256(data)
	h := sha512.Sum512(data)
	s512 := hex.EncodeToString(h[:])
	return `To ensure the image has not been corrupted in transmit or tampered with,
perform the following two steps to cryptographically verify image integrity:

1. Verify the authenticity of this file by checking that it is signed with our
   GPG release key:

    $ curl ` + keyURL + ` | gpg --import
    $ gpg --list-keys --with-fingerprint release-bookworm-images@turnkeylinux.org
    $ gpg --verify ` + file + `.hash
      gpg: Good signature from "TurnKey Linux Release Key"

2. Recalculate the image hash and make sure it matches your choice of hash below.

    $ sha256sum ` + file + `
      ` + s256 + `  ` + file + `

    $ sha512sum ` + file + `
      ` + s512 + `  ` + file + `

   Note, you can compare hashes automatically::

    $ sha256sum -c ` + file + `.hash
      ` + file + `: OK

    $ sha512sum -c ` + file + `.hash
      ` + file + `: OK

    Final note, when checking SHAs automatically, please ignore warning noting that some lines are improperly formatted.

`
}

// SetHash serves app's .hash document spoiled as p (HashOK restores it).
// The sums are those of the tarball as given to NewTurnKey.
func (k *TurnKey) SetHash(t testing.TB, app string, p HashProblem) {
	t.Helper()
	a := k.app(t, app)
	file := a.FileName()
	text := hashText(file, k.URL+"keys/tkl-bookworm-images.asc", a.Rootfs)
	var doc []byte
	switch p {
	case HashOK:
		doc = k.Signer.Clearsign(t, []byte(text))
	case HashBadSignature:
		doc = k.Signer.Clearsign(t, []byte(text))
		doc = bytes.Replace(doc, []byte("integrity:"), []byte("integrity!"), 1)
	case HashUnsigned:
		doc = []byte(text)
	case HashOtherKey:
		doc = NewSigner(t, "Somebody Else").Clearsign(t, []byte(text))
	case HashWrongFile:
		other := strings.Replace(file, a.App, a.App+"-other", 1)
		doc = k.Signer.Clearsign(t, []byte(strings.ReplaceAll(text, file, other)))
	case HashMissing:
		k.mu.Lock()
		delete(k.files, k.path(a)+".hash")
		k.mu.Unlock()
		return
	}
	k.put(k.path(a)+".hash", doc)
}

// Tamper changes app's tarball after its .hash was signed.
func (k *TurnKey) Tamper(t testing.TB, app string) {
	t.Helper()
	k.tamper(t, k.path(k.app(t, app)))
}

// TarballURL is the URL of app's tarball.
func (k *TurnKey) TarballURL(t testing.TB, app string) string {
	t.Helper()
	return k.URL + k.path(k.app(t, app))
}

func (k *TurnKey) serve(w http.ResponseWriter, r *http.Request) {
	k.record(r)
	switch r.URL.Path {
	case "/pve/aplinfo.dat":
		if !k.failListing(w) {
			_, _ = w.Write([]byte(k.aplinfo()))
		}
	case "/pve/aplinfo.dat.asc":
		sig, err := k.Signer.detach([]byte(k.aplinfo()))
		if err != nil || k.failListing(w) {
			http.Error(w, "marketfake: no signature", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(sig)
	default:
		k.serveFile(w, r)
	}
}

// aplinfo writes the records as TurnKey's aplinfo.dat does.
func (k *TurnKey) aplinfo() string {
	var b strings.Builder
	for _, a := range k.apps {
		if !k.listed(a.App) {
			continue
		}
		h := sha512.Sum512(a.Rootfs)
		title := strings.ReplaceAll(strings.ToUpper(a.App[:1])+a.App[1:], "-", " ")
		fmt.Fprintf(&b, `Package: turnkey-%s
Version: %s-%d
Type: lxc
OS: debian-%d
Section: turnkeylinux
Maintainer: marketfake <release@marketfake.invalid>
Architecture: %s
Location: %s%s
Infopage: https://www.turnkeylinux.org/%s
ManageUrl: https://__IPADDRESS__/
Description: TurnKey %s
    A marketfake appliance built from busybox for the %s app.
    Its tarball is a real rootfs.
sha512sum: %s

`, a.App, a.Version, a.Revision, a.Debian, a.Arch, k.URL, k.path(a), a.App, title, a.App, hex.EncodeToString(h[:]))
	}
	return b.String()
}
