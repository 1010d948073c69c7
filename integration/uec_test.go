package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// kernelSetIDs are the IDs `image create --aki/--uec` prints.
type kernelSetIDs struct{ kernel, ramdisk, disk, template int64 }

func parseKernelSet(t testing.TB, out string) kernelSetIDs {
	t.Helper()
	ids := kernelSetIDs{-1, -1, -1, -1} // IDs start at 0
	for _, l := range strings.Split(out, "\n") {
		for prefix, p := range map[string]*int64{"KERNEL ID: ": &ids.kernel, "RAMDISK ID: ": &ids.ramdisk, "ID: ": &ids.disk, "TEMPLATE ID: ": &ids.template} {
			if v, ok := strings.CutPrefix(l, prefix); ok {
				if _, err := fmt.Sscan(v, p); err != nil {
					t.Fatalf("%q: %v", l, err)
				}
			}
		}
	}
	if ids.kernel < 0 || ids.ramdisk < 0 || ids.disk < 0 || ids.template < 0 {
		t.Fatalf("the kernel set's IDs are not all printed:\n%s", out)
	}
	return ids
}

// amiDisk makes a raw ext4 disk (no partition table, as UEC's .img) whose
// /sbin/init, a busybox script, prints token with the running kernel's
// release and command line, then powers the VM off.
func amiDisk(t *testing.T, dir, token string) string {
	t.Helper()
	return busyboxInitDisk(t, dir,
		"/bin/busybox echo \""+token+" kernel=$(/bin/busybox uname -r)\"\n"+
			"/bin/busybox echo \""+token+" cmdline=$(/bin/busybox cat /proc/cmdline)\"\n"+
			"/bin/busybox echo \""+token+" end\"\n")
}

// busyboxInitDisk makes a raw 24 MB ext4 disk (no partition table) with
// busybox-static whose /sbin/init runs the shell lines body, then powers
// the VM off.
func busyboxInitDisk(t *testing.T, dir, body string) string {
	t.Helper()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "sbin", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "bin", "busybox"), busyboxBinary(t))
	if err := os.Chmod(filepath.Join(root, "bin", "busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/busybox sh\n" + body + "/bin/busybox poweroff -f\n"
	writeFile(t, filepath.Join(root, "sbin", "init"), []byte(script))
	if err := os.Chmod(filepath.Join(root, "sbin", "init"), 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "root.img")
	testenv.Exec(t, "mkfs.ext4", "-q", "-F", "-d", root, disk, "24M")
	return disk
}

// uecTarball writes a gzipped tar of Ubuntu's UEC layout holding the
// three files (and a README that is skipped).
func uecTarball(t *testing.T, path, kernel, ramdisk, disk string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range []struct{ name, file string }{
		{"README.files", ""},
		{"test-server-cloudimg-amd64-vmlinuz-virtual", kernel},
		{"test-server-cloudimg-amd64-initrd-virtual", ramdisk},
		{"test-server-cloudimg-amd64.img", disk},
	} {
		body := []byte("the files of this tarball\n")
		if e.file != "" {
			var err error
			if body, err = os.ReadFile(e.file); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, buf.Bytes())
}

// TestKernelSetBoots: an AKI/ARI/AMI set, and the same three in a UEC
// tarball, each become a KERNEL and a RAMDISK image in the files
// datastore, a raw OS image and a VM template with KERNEL_DS, INITRD_DS
// and ROOT, which boots under QEMU (TCG here): the AMI's own /sbin/init
// prints the token, the release of the AKI (Debian's linux-image-amd64,
// bin/kernel) and a command line with the template's root. The ARI is the
// initrd kernel-registry builds for that kernel (slipway-initrd and the
// virtio modules), downloaded as a user would have it.
func TestKernelSetBoots(t *testing.T) {
	deb := debianKernelPackage(t)
	vmlinuz := testenv.NeedRepoFile(t, "bin/kernel/vmlinuz", "run make kernel (tools/fetch-kernel.sh)")
	versionFile := testenv.NeedRepoFile(t, "bin/kernel/version", "run make kernel (tools/fetch-kernel.sh)")
	release, err := os.ReadFile(versionFile)
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{boot: true})
	dir := t.TempDir()

	var kernel struct {
		Initrd *int64 `json:"initrd"`
	}
	kid := mustID(s.t, s.mustSlipway("kernel", "add", "--name", "debian", deb))
	s.mustJSON(&kernel, "kernel", "show", fmt.Sprint(kid), "--json")
	if kernel.Initrd == nil {
		t.Fatalf("kernel-registry built no initrd for %s", deb)
	}
	ramdisk := filepath.Join(dir, "initrd.img")
	s.mustSlipway("image", "download", fmt.Sprint(s.waitSettled(*kernel.Initrd, 2*time.Minute).ID), "-o", ramdisk)

	boot := func(t *testing.T, name, token string, ids kernelSetIDs, disk string) {
		t.Helper()
		for _, c := range []struct {
			id               int64
			typ, datastore   string
			name, sameAsFile string
		}{
			{ids.kernel, "KERNEL", "files", name + "-kernel", vmlinuz},
			{ids.ramdisk, "RAMDISK", "files", name + "-ramdisk", ramdisk},
			{ids.disk, "OS", "default", name, disk},
		} {
			img := s.show(c.id)
			if img.State != "READY" || string(img.Type) != c.typ || img.Datastore != c.datastore || img.Name != c.name {
				t.Errorf("image %d: %s %s in %s named %s, want READY %s in %s named %s", c.id, img.State, img.Type, img.Datastore, img.Name, c.typ, c.datastore, c.name)
			}
			if img.SHA256 != fileSHA256(t, c.sameAsFile) {
				t.Errorf("image %d (%s) does not hold %s byte for byte (format %s)", c.id, c.typ, c.sameAsFile, img.Format)
			}
		}
		var tmpl struct {
			Template string `json:"template"`
		}
		s.mustJSON(&tmpl, "template", "show", fmt.Sprint(ids.template), "--json")
		for _, want := range []string{
			fmt.Sprintf(`KERNEL_DS="$FILE[IMAGE_ID=%d]"`, ids.kernel),
			fmt.Sprintf(`INITRD_DS="$FILE[IMAGE_ID=%d]"`, ids.ramdisk),
			`ROOT="vda"`,
			fmt.Sprintf(`IMAGE_ID="%d"`, ids.disk),
		} {
			if !strings.Contains(strings.ReplaceAll(tmpl.Template, " ", ""), want) {
				t.Errorf("template %d lacks %s:\n%s", ids.template, want, tmpl.Template)
			}
		}
		vm := s.instantiate(t, ids.template)
		console := s.waitConsole(t, vm, token+" end", 8*time.Minute)
		if want := token + " kernel=" + strings.TrimSpace(string(release)); !strings.Contains(console, want) {
			t.Errorf("the console lacks %q:\n%s", want, console)
		}
		if !strings.Contains(console, "root=/dev/vda") || !strings.Contains(console, "init=/sbin/init") {
			t.Errorf("the command line lacks root=/dev/vda or init=/sbin/init:\n%s", console)
		}
		s.terminate(t, vm)
	}

	t.Run("AKI ARI AMI", func(t *testing.T) {
		token := "AKI-" + randomHex(t, 6)
		disk := amiDisk(t, t.TempDir(), token)
		out := s.mustSlipway("image", "create", "--name", "akiset", "--aki", vmlinuz, "--ari", ramdisk, "--ami", disk, "--kernel-cmd", "init=/sbin/init")
		boot(t, "akiset", token, parseKernelSet(t, out), disk)
	})

	t.Run("UEC tarball", func(t *testing.T) {
		token := "UEC-" + randomHex(t, 6)
		d := t.TempDir()
		disk := amiDisk(t, d, token)
		tarball := filepath.Join(d, "test-server-cloudimg-amd64.tar.gz")
		uecTarball(t, tarball, vmlinuz, ramdisk, disk)
		tmp := t.TempDir()
		out := s.mustSlipway("image", "create", "--name", "uecset", "--uec", tarball, "--kernel-cmd", "init=/sbin/init", "--tmp-dir", tmp)
		ids := parseKernelSet(t, out)
		img := s.show(ids.kernel)
		if !strings.HasSuffix(img.Origin, `#"test-server-cloudimg-amd64-vmlinuz-virtual"`) {
			t.Errorf("the kernel's origin is %q, want the tarball and its member", img.Origin)
		}
		if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
			t.Errorf("%d entries left in --tmp-dir", len(entries))
		}
		boot(t, "uecset", token, ids, disk)
	})
}

// TestKernelSetRefusals: hostile UEC tarballs and incomplete kernel sets
// end with an error that names the problem, before any image exists, with
// nothing left in S3's staging area or the extraction directory; an AMI
// that fails its import takes the kernel and ramdisk already made with it.
func TestKernelSetRefusals(t *testing.T) {
	s := newStack(t, stackOptions{})
	dir := t.TempDir()
	kernel, ramdisk := filepath.Join(dir, "k"), filepath.Join(dir, "r")
	writeFile(t, kernel, bytes.Repeat([]byte("k"), 4096))
	writeFile(t, ramdisk, bytes.Repeat([]byte("r"), 4096))
	disk := filepath.Join(dir, "d.img")
	writeRandomRaw(t, disk, 1<<20)

	entry := func(name string, typ byte, body []byte, link string) func(*tar.Writer) {
		return func(tw *tar.Writer) {
			h := &tar.Header{Name: name, Mode: 0o644, Typeflag: typ, Linkname: link, Size: int64(len(body))}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
		}
	}
	k := entry("x-vmlinuz-virtual", tar.TypeReg, []byte("kernel"), "")
	r := entry("x-initrd-virtual", tar.TypeReg, []byte("ramdisk"), "")
	d := entry("x.img", tar.TypeReg, bytes.Repeat([]byte("d"), 4096), "")
	huge := func(tw *tar.Writer) {
		if err := tw.WriteHeader(&tar.Header{Name: "y.img", Mode: 0o644, Typeflag: tar.TypeReg, Size: 1 << 40}); err != nil {
			t.Fatal(err)
		}
		tw.Flush()
	}
	tarball := func(name string, entries ...func(*tar.Writer)) string {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for _, e := range entries {
			e(tw)
		}
		_ = tw.Close() // a huge entry's data is missing on purpose
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".tar.gz")
		writeFile(t, path, buf.Bytes())
		return path
	}
	before := len(s.objects())
	images := func() int {
		var list []json.RawMessage
		s.mustJSON(&list, "image", "list", "--json")
		return len(list)
	}
	tmp := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"dot-dot", []string{"--uec", tarball("dotdot", k, r, entry("../../x.img", tar.TypeReg, []byte("d"), ""))}, `"../../x.img" climbs out of the tarball (..)`},
		{"absolute", []string{"--uec", tarball("abs", k, r, entry("/tmp/x.img", tar.TypeReg, []byte("d"), ""))}, `"/tmp/x.img" has an absolute path`},
		{"symlink", []string{"--uec", tarball("symlink", k, r, entry("x.img", tar.TypeSymlink, nil, "/etc/passwd"))}, `"x.img" is a symbolic link`},
		{"hard link", []string{"--uec", tarball("hardlink", k, r, entry("z.img", tar.TypeLink, nil, "x-vmlinuz-virtual"))}, `"z.img" is a hard link`},
		{"two kernels", []string{"--uec", tarball("two", k, r, d, entry("y-vmlinuz-generic", tar.TypeReg, []byte("k2"), ""))}, `two kernels: "x-vmlinuz-virtual" and "y-vmlinuz-generic"`},
		{"missing pieces", []string{"--uec", tarball("missing", k)}, `no ramdisk (*-initrd*), no disk (*.img)`},
		{"huge", []string{"--uec", tarball("huge", k, r, huge)}, `"y.img" is 1099511627776 bytes: the pieces would exceed the limit`},
		{"not a tarball", []string{"--uec", disk}, `not gzip`},
		{"AKI without the others", []string{"--aki", kernel}, `needs all three of --aki (kernel), --ari (ramdisk) and --ami (raw disk)`},
		{"both forms", []string{"--aki", kernel, "--ari", ramdisk, "--ami", disk, "--uec", disk}, `either --uec or --aki, --ari and --ami, not both`},
		{"--path", []string{"--aki", kernel, "--ari", ramdisk, "--ami", disk, "--path", disk}, `--path does not apply to a kernel set`},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := s.slipway(append([]string{"image", "create", "--name", "bad", "--tmp-dir", tmp}, c.args...)...)
			if code == 0 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, want an error saying %q:\n%s%s", code, c.want, stdout, stderr)
			}
			if n := images(); n != 0 {
				t.Errorf("%d images exist", n)
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Errorf("%d entries left in --tmp-dir", len(entries))
			}
			if n := len(s.objects()); n != before {
				t.Errorf("%d objects in S3, %d before", n, before)
			}
		})
	}

	t.Run("an AMI that fails its import takes the others with it", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.qcow2")
		qemuImg(t, "create", "-f", "qcow2", "-b", disk, "-F", "raw", bad)
		stdout, stderr, code := s.slipway("image", "create", "--name", "half", "--aki", kernel, "--ari", ramdisk, "--ami", bad)
		if code == 0 || !strings.Contains(stderr, "kernel set half: the OS disk") {
			t.Fatalf("exit %d:\n%s%s", code, stdout, stderr)
		}
		var list []struct {
			ID    int64  `json:"id"`
			Name  string `json:"name"`
			State string `json:"state"`
		}
		s.mustJSON(&list, "image", "list", "--json")
		for _, img := range list {
			t.Errorf("image %d (%s) is %s: the half-made set should be gone", img.ID, img.Name, img.State)
		}
	})
}

// TestKernelSetFromURLs: the pieces, and a UEC tarball, may be http(s)
// URLs: the converter fetches the three pieces (the stack's fetch policy
// applies), the CLI fetches a tarball for the person running it. A URL
// that answers 404 is named in the error and makes nothing. (With this
// stack's crypto-luks, it also checks how a LUKS image downloads.)
func TestKernelSetFromURLs(t *testing.T) {
	s := newStack(t, stackOptions{boot: true}) // the launcher keeps templates
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "vmlinuz"), bytes.Repeat([]byte("k"), 5000))
	writeFile(t, filepath.Join(dir, "initrd"), bytes.Repeat([]byte("r"), 3000))
	writeRandomRaw(t, filepath.Join(dir, "root.img"), 2<<20)
	uecTarball(t, filepath.Join(dir, "set.tar.gz"), filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd"), filepath.Join(dir, "root.img"))
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()

	check := func(t *testing.T, ids kernelSetIDs) {
		t.Helper()
		for id, want := range map[int64]string{ids.kernel: "vmlinuz", ids.ramdisk: "initrd", ids.disk: "root.img"} {
			img := s.show(id)
			if img.State != "READY" || img.SHA256 != fileSHA256(t, filepath.Join(dir, want)) {
				t.Errorf("image %d is %s (%s) and does not hold %s", id, img.State, img.Error, want)
			}
		}
		s.mustSlipway("template", "show", fmt.Sprint(ids.template))
	}
	t.Run("AKI ARI AMI URLs", func(t *testing.T) {
		out := s.mustSlipway("image", "create", "--name", "urlset", "--aki", srv.URL+"/vmlinuz", "--ari", srv.URL+"/initrd", "--ami", srv.URL+"/root.img")
		check(t, parseKernelSet(t, out))
	})
	t.Run("UEC URL", func(t *testing.T) {
		out := s.mustSlipway("image", "create", "--name", "uecurl", "--uec", srv.URL+"/set.tar.gz")
		check(t, parseKernelSet(t, out))
	})
	// The stack has crypto-luks: a LUKS image downloads as its ciphertext,
	// and a conversion is refused for want of its secret.
	t.Run("a LUKS image downloads only as ciphertext", func(t *testing.T) {
		id := mustID(s.t, s.mustSlipway("luks", "create", "--size", "8", "--name", "secret-data"))
		img := s.waitImageState(id, "READY", 2*time.Minute)
		dst := filepath.Join(t.TempDir(), "volume.luks")
		s.mustSlipway("image", "download", fmt.Sprint(id), "-o", dst)
		if fileSHA256(t, dst) != img.SHA256 {
			t.Error("the LUKS download is not the stored blob")
		}
		head, err := os.ReadFile(dst)
		if err != nil || !bytes.HasPrefix(head, []byte("LUKS\xba\xbe")) {
			t.Errorf("the download does not start with the LUKS magic (%v)", err)
		}
		_, stderr, code := s.slipway("image", "download", fmt.Sprint(id), "--format", "raw", "-o", dst+".raw")
		if code == 0 || !strings.Contains(stderr, "is LUKS-encrypted: it downloads only as its ciphertext") {
			t.Errorf("exit %d: %s", code, stderr)
		}
		if _, err := os.Stat(dst + ".raw"); !os.IsNotExist(err) {
			t.Errorf("a refused download left %s (%v)", dst+".raw", err)
		}
	})
	t.Run("a template the launcher refuses takes the images with it", func(t *testing.T) {
		var before []json.RawMessage
		s.mustJSON(&before, "image", "list", "--json")
		_, stderr, code := s.slipway("image", "create", "--name", "badroot", "--aki", srv.URL+"/vmlinuz", "--ari", srv.URL+"/initrd", "--ami", srv.URL+"/root.img", "--root", "vda init=/bin/sh")
		if code == 0 || !strings.Contains(stderr, "kernel set badroot: the VM template") || !strings.Contains(stderr, `ROOT "vda init=/bin/sh" must be a device name`) {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var after []json.RawMessage
		s.mustJSON(&after, "image", "list", "--json")
		if len(after) != len(before) {
			t.Errorf("%d images, %d before: the set's images were not deleted", len(after), len(before))
		}
	})
	t.Run("UEC URL 404", func(t *testing.T) {
		var before []json.RawMessage
		s.mustJSON(&before, "image", "list", "--json")
		_, stderr, code := s.slipway("image", "create", "--name", "gone", "--uec", srv.URL+"/gone.tar.gz")
		if code == 0 || !strings.Contains(stderr, "gone.tar.gz: HTTP 404") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var after []json.RawMessage
		s.mustJSON(&after, "image", "list", "--json")
		if len(after) != len(before) {
			t.Errorf("%d images, %d before", len(after), len(before))
		}
	})
}
