package integration

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostileCase is one untrusted input and the words its error must contain.
type hostileCase struct {
	name    string
	path    string
	args    []string
	wantErr []string
}

// TestHostileCorpus feeds the whole stack disks built to attack it. Each must
// end ERROR with a message naming the problem, no host file content may reach
// any blob, no blob or multipart upload may be left behind, and the services
// must keep serving.
func TestHostileCorpus(t *testing.T) {
	s := newStack(t, stackOptions{maxVirtualSize: 1 << 30})
	dir := t.TempDir()

	// A "host file" the attacks point at. Its marker must never reach S3.
	marker := "SLIPWAY-HOST-SECRET-" + randomHex(t, 8)
	hostFile := filepath.Join(dir, "host-secret")
	writeFile(t, hostFile, bytes.Repeat([]byte(marker+"\n"), 1<<14))

	corpus := buildHostileCorpus(t, dir, hostFile)
	for _, c := range corpus {
		t.Run(c.name, func(t *testing.T) {
			id, out, code := s.create(append([]string{"--name", c.name, "--path", c.path}, c.args...)...)
			if code == 0 {
				t.Fatalf("hostile input accepted:\n%s", out)
			}
			img := s.waitSettled(id, 2*time.Minute)
			if img.State != "ERROR" {
				t.Fatalf("state %s, want ERROR", img.State)
			}
			msg := strings.ToLower(img.Error)
			for _, w := range c.wantErr {
				if !strings.Contains(msg, strings.ToLower(w)) {
					t.Errorf("error %q does not name %q", img.Error, w)
				}
			}
			if !strings.Contains(out, img.Error) {
				t.Errorf("the CLI did not print the error; it printed:\n%s", out)
			}
		})
	}

	t.Run("no blob and no upload left behind", func(t *testing.T) {
		if objs := s.objects(); len(objs) != 0 {
			t.Errorf("objects left behind: %v", objs)
		}
		if n := s.incompleteUploads(); n != 0 {
			t.Errorf("%d incomplete multipart uploads left", n)
		}
	})

	t.Run("services keep serving", func(t *testing.T) {
		good := filepath.Join(dir, "good.raw")
		writeRandomRaw(t, good, 8<<20)
		id, out, code := s.create("--name", "after-the-storm", "--path", good, "--format", "qcow2")
		if code != 0 {
			t.Fatalf("a good image after the corpus failed:\n%s", out)
		}
		img := s.show(id)
		sum, _ := s.objectSHA256(img.Source)
		if img.State != "READY" || sum != img.SHA256 {
			t.Fatalf("state %s, sha256 %s vs object %s", img.State, img.SHA256, sum)
		}
	})

	t.Run("no host file content in any blob", func(t *testing.T) {
		for _, url := range s.objects() {
			local := filepath.Join(t.TempDir(), "obj")
			s.download(url, local)
			data, err := os.ReadFile(local)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte(marker)) {
				t.Errorf("%s carries the host file's content", url)
			}
		}
	})
}

func buildHostileCorpus(t *testing.T, dir, hostFile string) []hostileCase {
	p := func(name string) string { return filepath.Join(dir, name) }

	qemuImg(t, "create", "-f", "qcow2", "-b", hostFile, "-F", "raw", p("backing.qcow2"), "64M")
	qemuImg(t, "create", "-f", "qcow2", "-o", "data_file="+p("external.data"), p("datafile.qcow2"), "64M")

	// A VMDK descriptor whose extent is the host file.
	writeFile(t, p("extent.vmdk"), []byte(fmt.Sprintf(`# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

RW 128 FLAT "%s" 0

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "1"
ddb.geometry.heads = "16"
ddb.geometry.sectors = "63"
ddb.adapterType = "ide"
`, hostFile)))

	writeRandomRaw(t, p("real.raw"), 16<<20)
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", p("real.raw"), p("real.qcow2"))

	// The first 100 KiB of a qcow2: a header whose tables lie past the end.
	data, err := os.ReadFile(p("real.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("truncated.qcow2"), data[:100<<10])
	writeFile(t, p("empty.img"), nil)

	// A qcow2 whose header claims 8 EiB: the size field is at offset 24.
	huge := bytes.Clone(data[:1<<20])
	binary.BigEndian.PutUint64(huge[24:], 8<<60)
	writeFile(t, p("exabytes.qcow2"), huge)

	writeGzipBomb(t, p("bomb.raw.gz"), 4<<30)

	return []hostileCase{
		{name: "qcow2-backing-file", path: p("backing.qcow2"), wantErr: []string{"backing file"}},
		{name: "qcow2-external-data-file", path: p("datafile.qcow2"), wantErr: []string{"data file"}},
		{name: "vmdk-extent-host-file", path: p("extent.vmdk"), wantErr: []string{"vmdk", "descriptor"}},
		{name: "qcow2-declared-raw", path: p("real.qcow2"), args: []string{"--source-format", "raw"}, wantErr: []string{"raw", "qcow2"}},
		{name: "truncated-qcow2", path: p("truncated.qcow2"), wantErr: []string{"truncated"}},
		{name: "empty-file", path: p("empty.img"), wantErr: []string{"empty"}},
		{name: "qcow2-exabytes", path: p("exabytes.qcow2"), wantErr: []string{"virtual size", "limit"}},
		{name: "gzip-bomb", path: p("bomb.raw.gz"), wantErr: []string{"decompressed", "limit"}},
	}
}

// writeGzipBomb writes size bytes of zeros as gzip (about 1000:1): one
// 256 MiB member, repeated, since gzip readers read concatenated members.
func writeGzipBomb(t *testing.T, path string, size int64) {
	t.Helper()
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	const chunk = 256 << 20
	if _, err := io.CopyN(zw, zeroReader{}, chunk); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, bytes.Repeat(member.Bytes(), int(size/chunk)))
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
