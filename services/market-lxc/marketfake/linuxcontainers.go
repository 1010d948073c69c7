package marketfake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// LXCImage is one build a LinuxContainers fake serves.
type LXCImage struct {
	Dist    string // lower case, e.g. "debian" (the os field is Dist capitalised)
	Release string // "bookworm"
	Title   string // release_title, e.g. "12"; "" uses Release
	Arch    string // as the server spells it: "amd64", "arm64"
	Variant string // "default"
	Build   string // e.g. "20261205_05:24"
	Rootfs  []byte // rootfs.tar.xz
	Disk    []byte // disk.qcow2 (disk-kvm.img); nil serves none
}

// Key is "dist:release:arch:variant", the product key of
// images.linuxcontainers.org; Drop and Tamper take it.
func (i LXCImage) Key() string {
	return strings.Join([]string{i.Dist, i.Release, i.Arch, i.Variant}, ":")
}

func (i LXCImage) dir() string {
	return fmt.Sprintf("images/%s/%s/%s/%s/%s/", i.Dist, i.Release, i.Arch, i.Variant, i.Build)
}

// LinuxContainers fakes images.linuxcontainers.org: the simplestreams index
// and the LXC download index over one image tree.
type LinuxContainers struct {
	control
	URL    string  // the endpoint, ending in "/"
	Signer *Signer // signs the .asc files; its PublicKey is the keyring
	images []LXCImage
	meta   map[string][]byte // build dir → its metadata tarball
}

// NewLinuxContainers serves images on loopback. Several builds of one Key
// may be given; the listing holds them all, as the real server does.
func NewLinuxContainers(t testing.TB, images ...LXCImage) *LinuxContainers {
	t.Helper()
	l := &LinuxContainers{control: newControl(), Signer: NewSigner(t, "Linux Containers Image Signing Key"),
		images: images, meta: map[string][]byte{}}
	for _, img := range images {
		for what, v := range map[string]string{"dist": img.Dist, "release": img.Release, "arch": img.Arch, "variant": img.Variant, "build": img.Build} {
			checkToken(t, what, v)
		}
		l.writeBuild(t, img)
	}
	srv := start(t, http.HandlerFunc(l.serve))
	l.URL = srv.URL + "/"
	return l
}

// meta is a small metadata tarball standing in for incus.tar.xz/lxd.tar.xz.
func meta(t testing.TB, img LXCImage) []byte {
	yaml := fmt.Sprintf("architecture: %s\ncreation_date: 1764892800\nproperties:\n  os: %s\n  release: %s\n  variant: %s\n",
		img.Arch, img.Dist, img.Release, img.Variant)
	return Xz(t, []byte(yaml))
}

func (l *LinuxContainers) writeBuild(t testing.TB, img LXCImage) {
	dir := img.dir()
	m := meta(t, img)
	l.meta[dir] = m
	files := map[string][]byte{"rootfs.tar.xz": img.Rootfs, "meta.tar.xz": m, "incus.tar.xz": m, "lxd.tar.xz": m}
	if img.Disk != nil {
		files["disk.qcow2"] = img.Disk
	}
	var sums strings.Builder
	for _, name := range []string{"disk.qcow2", "incus.tar.xz", "lxd.tar.xz", "meta.tar.xz", "rootfs.tar.xz"} {
		data, ok := files[name]
		if !ok {
			continue
		}
		l.put(dir+name, data)
		l.put(dir+name+".asc", l.Signer.Detach(t, data))
		fmt.Fprintf(&sums, "%s  %s\n", sum256(data), name)
	}
	l.put(dir+"SHA256SUMS", []byte(sums.String()))
	l.put(dir+"SHA256SUMS.asc", l.Signer.Detach(t, []byte(sums.String())))
}

// RemoveSums stops serving every build's SHA256SUMS (404), like a server
// that publishes only .asc signatures.
func (l *LinuxContainers) RemoveSums() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.files {
		if strings.HasSuffix(p, "/SHA256SUMS") || strings.HasSuffix(p, "/SHA256SUMS.asc") {
			delete(l.files, p)
		}
	}
}

// Tamper changes the newest build's rootfs.tar.xz of key after its sums
// were published.
func (l *LinuxContainers) Tamper(t testing.TB, key string) {
	t.Helper()
	l.tamper(t, l.newest(t, key).dir()+"rootfs.tar.xz")
}

// TamperSums changes the newest build's SHA256SUMS.asc of key, so that
// its signature no longer verifies.
func (l *LinuxContainers) TamperSums(t testing.TB, key string) {
	t.Helper()
	l.tamper(t, l.newest(t, key).dir()+"SHA256SUMS.asc")
}

// newest is the newest build of key.
func (l *LinuxContainers) newest(t testing.TB, key string) *LXCImage {
	t.Helper()
	var newest *LXCImage
	for i := range l.images {
		if l.images[i].Key() == key && (newest == nil || l.images[i].Build > newest.Build) {
			newest = &l.images[i]
		}
	}
	if newest == nil {
		t.Fatalf("marketfake: no image %q", key)
	}
	return newest
}

// RootfsURL is the URL of an image's rootfs.tar.xz.
func (l *LinuxContainers) RootfsURL(img LXCImage) string { return l.URL + img.dir() + "rootfs.tar.xz" }

func (l *LinuxContainers) serve(w http.ResponseWriter, r *http.Request) {
	l.record(r)
	switch r.URL.Path {
	case "/streams/v1/index.json":
		l.listing(w, l.index())
	case "/streams/v1/images.json":
		l.listing(w, l.products())
	case "/meta/1.0/index-system":
		l.listing(w, []byte(l.indexSystem()))
	case "/meta/1.0/index-system.asc":
		sig, err := l.Signer.detach([]byte(l.indexSystem()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		l.listing(w, sig)
	default:
		l.serveFile(w, r)
	}
}

func (l *LinuxContainers) listing(w http.ResponseWriter, body []byte) {
	if l.failListing(w) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (l *LinuxContainers) listed() []LXCImage {
	var out []LXCImage
	for _, img := range l.images {
		if l.control.listed(img.Key()) {
			out = append(out, img)
		}
	}
	return out
}

func (l *LinuxContainers) index() []byte {
	var keys []string
	seen := map[string]bool{}
	for _, img := range l.listed() {
		if !seen[img.Key()] {
			seen[img.Key()] = true
			keys = append(keys, img.Key())
		}
	}
	doc := map[string]any{
		"format": "index:1.0",
		"index": map[string]any{"images": map[string]any{
			"datatype": "image-downloads", "path": "streams/v1/images.json", "format": "products:1.0",
			"products": keys, "updated": "Sat, 05 Dec 2026 09:12:44 +0000",
		}},
		"updated": "Sat, 05 Dec 2026 09:12:44 +0000",
	}
	b, _ := json.Marshal(doc)
	return b
}

// products is images.json for the listed images; the sums are those of the
// files as first written, so a Tamper shows.
func (l *LinuxContainers) products() []byte {
	products := map[string]any{}
	for _, img := range l.listed() {
		p, ok := products[img.Key()].(map[string]any)
		if !ok {
			title := img.Title
			if title == "" {
				title = img.Release
			}
			p = map[string]any{
				"aliases": fmt.Sprintf("%s/%s/%s,%s/%s/%s", img.Dist, img.Release, img.Variant, img.Dist, title, img.Variant),
				"arch":    img.Arch, "os": strings.ToUpper(img.Dist[:1]) + img.Dist[1:], "release": img.Release,
				"release_title": title, "variant": img.Variant, "requirements": map[string]any{},
				"versions": map[string]any{},
			}
			products[img.Key()] = p
		}
		p["versions"].(map[string]any)[img.Build] = map[string]any{"items": l.items(img)}
	}
	b, _ := json.Marshal(map[string]any{"content_id": "images", "datatype": "image-downloads",
		"format": "products:1.0", "products": products})
	return b
}

func (l *LinuxContainers) items(img LXCImage) map[string]any {
	dir := img.dir()
	m := l.meta[dir]
	metaItem := func(ftype string) map[string]any {
		it := map[string]any{"ftype": ftype, "sha256": sum256(m), "size": len(m), "path": dir + ftype,
			"combined_sha256":        sum256(m, img.Rootfs),
			"combined_rootxz_sha256": sum256(m, img.Rootfs)}
		if img.Disk != nil {
			it["combined_disk-kvm-img_sha256"] = sum256(m, img.Disk)
		}
		return it
	}
	items := map[string]any{
		"incus.tar.xz": metaItem("incus.tar.xz"),
		"lxd.tar.xz":   metaItem("lxd.tar.xz"),
		"root.tar.xz":  map[string]any{"ftype": "root.tar.xz", "sha256": sum256(img.Rootfs), "size": len(img.Rootfs), "path": dir + "rootfs.tar.xz"},
	}
	if img.Disk != nil {
		items["disk.qcow2"] = map[string]any{"ftype": "disk-kvm.img", "sha256": sum256(img.Disk), "size": len(img.Disk), "path": dir + "disk.qcow2"}
	}
	return items
}

func (l *LinuxContainers) indexSystem() string {
	var b strings.Builder
	for _, img := range l.listed() {
		fmt.Fprintf(&b, "%s;%s;%s;%s;%s;/%s\n", img.Dist, img.Release, img.Arch, img.Variant, img.Build, img.dir())
	}
	return b.String()
}

func sum256(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
