package inspect

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// qemuImg runs the real qemu-img and fails the test on error.
func qemuImg(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// rawWithData writes an 8 MiB raw disk with an MBR signature and some
// pseudo-random data, so converted images have allocated clusters.
func rawWithData(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "src.raw")
	b := make([]byte, 8<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 1 << 20; i < 2<<20; i++ {
		b[i] = byte(r.Uint32())
	}
	b[510], b[511] = 0x55, 0xaa
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// convertTo converts the raw source into format f with extra options.
func convertTo(t testing.TB, dir, raw, name string, f string, extra ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	args := append([]string{"convert", "-f", "raw", "-O", f}, extra...)
	qemuImg(t, append(args, raw, p)...)
	return p
}

// minimalISO builds an ISO 9660 image by hand: 16 empty system-area
// sectors, a primary volume descriptor and a terminator.
func minimalISO(t testing.TB, dir string) string {
	t.Helper()
	const blocks = 20
	b := make([]byte, blocks*2048)
	pvd := b[16*2048:]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	pvd[6] = 1
	copy(pvd[40:72], bytes.Repeat([]byte(" "), 32))
	copy(pvd[40:], "SLIPWAY")
	le.PutUint32(pvd[80:], blocks)
	be.PutUint32(pvd[84:], blocks)
	le.PutUint16(pvd[128:], 2048)
	be.PutUint16(pvd[130:], 2048)
	term := b[17*2048:]
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	p := filepath.Join(dir, "min.iso")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// patch overwrites bytes of a file at off.
func patch(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// replaceText replaces old with new inside the NUL-terminated text (a VMDK
// descriptor) that contains old; the zero padding after it absorbs growth.
func replaceText(t testing.TB, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(old))
	if i < 0 {
		t.Fatalf("%q not found in %s", old, path)
	}
	end := i + bytes.IndexByte(b[i:], 0)
	text := append([]byte(new), b[i+len(old):end]...)
	for j := i; j < end; j++ {
		b[j] = 0
	}
	copy(b[i:], text)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// createLUKS makes a LUKS image with the real qemu-img. The PBKDF benchmark
// behind iter-time sometimes fails on a loaded machine ("Unable to get
// accurate CPU usage"), so it is retried a few times.
func createLUKS(t testing.TB, path, size string) {
	t.Helper()
	var out []byte
	var err error
	for _, iter := range []string{"10", "10", "50", "100"} {
		out, err = exec.Command("qemu-img", "create", "-f", "luks", "--object", "secret,id=s0,data=x",
			"-o", "key-secret=s0,iter-time="+iter, path, size).CombinedOutput()
		if err == nil {
			return
		}
	}
	t.Fatalf("qemu-img create -f luks: %v\n%s", err, out)
}
