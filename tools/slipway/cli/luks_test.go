package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/tools/slipway/up"
)

func TestLibvirtSecret(t *testing.T) {
	s := libvirtSecret{UUID: "0b8e7c9a-3f1d-4c2e-9a6b-5d4e3f2a1b0c", ImageID: 7, Name: "db <main> & co", Volume: "/var/lib/libvirt/images/db.luks"}
	var doc struct {
		XMLName     xml.Name `xml:"secret"`
		Ephemeral   string   `xml:"ephemeral,attr"`
		Private     string   `xml:"private,attr"`
		UUID        string   `xml:"uuid"`
		Description string   `xml:"description"`
		Usage       struct {
			Type   string `xml:"type,attr"`
			Volume string `xml:"volume"`
		} `xml:"usage"`
	}
	if err := xml.Unmarshal([]byte(s.XML()), &doc); err != nil {
		t.Fatalf("secret XML does not parse: %v\n%s", err, s.XML())
	}
	if doc.UUID != s.UUID || doc.Usage.Type != "volume" || doc.Usage.Volume != s.Volume ||
		doc.Private != "yes" || doc.Ephemeral != "no" || !strings.Contains(doc.Description, "db <main> & co") {
		t.Fatalf("secret XML: %+v", doc)
	}
	steps := s.Steps()
	for _, want := range []string{"virsh -c qemu:///system secret-define slipway-luks-" + s.UUID + ".xml",
		"secret-set-value --secret " + s.UUID + " --file slipway-luks-" + s.UUID + ".pass --plain", "--passphrase"} {
		if !strings.Contains(steps, want) {
			t.Errorf("steps lack %q:\n%s", want, steps)
		}
	}
	pass := []byte("it's-a-secret_passphrase")
	script := s.Script(pass)
	if n := strings.Count(script, "it'\\''s-a-secret_passphrase"); n != 1 {
		t.Fatalf("the passphrase appears %d times in the script, want once (in printf):\n%s", n, script)
	}
	for _, line := range strings.Split(script, "\n") {
		if strings.Contains(line, "secret_passphrase") && !strings.HasPrefix(line, "printf '%s' ") {
			t.Errorf("passphrase on a line other than the printf builtin: %q", line)
		}
	}
	if !strings.Contains(script, s.XML()) || !strings.Contains(script, "umask 077") {
		t.Errorf("script:\n%s", script)
	}
}

// TestEndToEndLuks runs the whole stack (`slipway up` in-process: catalog,
// crypto-luks and the rest over real NATS, MinIO and qemu-img) and drives
// every luks subcommand.
func TestEndToEndLuks(t *testing.T) {
	testenv.Program(t, "qemu-img", "apt-get install qemu-utils")
	t.Setenv("SLIPWAY_MARKET_MONITORING", "off")
	for _, v := range []string{"SLIPWAY_LUKS_KEK", "SLIPWAY_LUKS_KEK_FILE", "SLIPWAY_LUKS_OLD_KEK_FILES"} {
		t.Setenv(v, "")
	}
	s3 := testenv.MinIO(t)
	dataDir := dataDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(newTestLog(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := up.Start(ctx, up.Config{DataDir: dataDir, NATSPort: -1, S3: s3.BlobConfig(), Logger: logger})
	if err != nil {
		t.Fatalf("up.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Stop(); err != nil {
			t.Errorf("stack stop: %v", err)
		}
	})
	flags := []string{"--nats-url", st.NATSURL, "--creds", st.Credentials, "--s3-endpoint", s3.Endpoint, "--s3-access-key", s3.AccessKey, "--s3-secret-key", s3.SecretKey}

	// No KEK configured: up made one, readable by its owner only.
	if fi, err := os.Stat(filepath.Join(dataDir, "luks.kek")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("KEK file of slipway up: %v %v", fi, err)
	}

	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	data := make([]byte, 4<<20)
	_, _ = rand.Read(data[:3<<20])
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	must(t, slipway(t, flags, "image", "create", "--name", "plain", "--path", raw, "--wait", "--timeout", "2m"))

	r := must(t, slipway(t, flags, "luks", "encrypt", "plain", "--name", "secret-disk", "--timeout", "2m"))
	m := regexp.MustCompile(`(?m)^ID: (\d+)$`).FindStringSubmatch(r.stdout)
	if m == nil || !strings.Contains(r.stdout, "READY format luks") {
		t.Fatalf("luks encrypt stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	id := m[1]
	img := showJSON(t, flags, id)
	secret := img.Attributes["LUKS_SECRET"]
	if img.Format != "luks" || secret == "" || img.Attributes["ENCRYPTED_FROM"] != "0" {
		t.Fatalf("encrypted image: %+v", img)
	}

	// The passphrase, fetched sealed, opens the stored blob; the content
	// is the original file.
	pass := must(t, slipway(t, flags, "luks", "secret", id, "--passphrase")).stdout
	if len(pass) != 43 {
		t.Fatalf("--passphrase printed %d bytes, want the 43-character passphrase alone", len(pass))
	}
	store, err := blob.New(s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := decryptBlob(t, store, img.Source, pass, 4<<20); !bytes.Equal(got, data) {
		t.Fatal("decrypted image differs from the original file")
	}

	r = must(t, slipway(t, flags, "luks", "secret", id, "--libvirt-xml"))
	if !strings.Contains(r.stdout, "<uuid>"+secret+"</uuid>") || !strings.Contains(r.stdout, "<usage type='volume'>") ||
		strings.Contains(r.stdout, pass) || !strings.Contains(r.stderr, "secret-set-value --secret "+secret) {
		t.Fatalf("--libvirt-xml:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	r = must(t, slipway(t, flags, "luks", "secret", id))
	if !strings.Contains(r.stdout, secret) || strings.Contains(r.stdout, pass) || !strings.Contains(r.stdout, "SLOTS") {
		t.Fatalf("luks secret:\n%s", r.stdout)
	}

	r = must(t, slipway(t, flags, "luks", "slot", "add", id))
	if !strings.Contains(r.stdout, "key slots 0, 1 (primary 0); added 1") {
		t.Fatalf("slot add: %s", r.stdout)
	}
	r = must(t, slipway(t, flags, "luks", "slot", "list", id))
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 3 {
		t.Fatalf("slot list:\n%s", r.stdout)
	}
	r = must(t, slipway(t, flags, "luks", "slot", "remove", id, "--slot", "0"))
	if !strings.Contains(r.stdout, "key slots 1 (primary 1); removed 0") {
		t.Fatalf("slot remove: %s", r.stdout)
	}
	r = slipway(t, flags, "luks", "slot", "remove", id, "--slot", "1")
	if r.code == 0 || !strings.Contains(r.stderr, "only key slot") {
		t.Fatalf("removing the last slot: exit %d, stderr %s", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "luks", "rotate", id))
	newPass := must(t, slipway(t, flags, "luks", "secret", id, "--passphrase")).stdout
	if newPass == pass {
		t.Fatal("rotate kept the passphrase")
	}
	img = showJSON(t, flags, id)
	if got := decryptBlob(t, store, img.Source, newPass, 4<<20); !bytes.Equal(got, data) {
		t.Fatal("after rotate: decrypted image differs")
	}
	// Each slot change rewrote the blob; the catalog follows its digest
	// (from crypto-luks's slots-changed), so launchers accept the blob.
	blobSum := objectSHA256(t, store, img.Source)
	for deadline := time.Now().Add(20 * time.Second); img.SHA256 != blobSum; img = showJSON(t, flags, id) {
		if time.Now().After(deadline) {
			t.Fatalf("after the slot changes the catalog says sha256 %s, the blob's is %s", img.SHA256, blobSum)
		}
		time.Sleep(200 * time.Millisecond)
	}

	r = must(t, slipway(t, flags, "luks", "create", "--size", "8", "--name", "scratch"))
	if !regexp.MustCompile(`(?m)^ID: \d+$`).MatchString(r.stdout) || !strings.Contains(r.stdout, "READY format luks") {
		t.Fatalf("luks create:\n%s\n%s", r.stdout, r.stderr)
	}
	r = must(t, slipway(t, flags, "luks", "rotate-kek"))
	if !strings.Contains(r.stdout, "2 secrets, 0 re-wrapped") {
		t.Fatalf("rotate-kek: %s", r.stdout)
	}
	r = slipway(t, flags, "luks", "secret", "plain")
	if r.code == 0 || !strings.Contains(r.stderr, "not a LUKS image") {
		t.Fatalf("secret of a plain image: exit %d %s", r.code, r.stderr)
	}
}

func showJSON(t *testing.T, flags []string, id string) listed {
	t.Helper()
	r := must(t, slipway(t, flags, "image", "show", id, "--json"))
	var img listed
	if err := json.Unmarshal([]byte(r.stdout), &img); err != nil {
		t.Fatalf("show --json: %v\n%s", err, r.stdout)
	}
	return img
}

// decryptBlob downloads a LUKS blob and decrypts it with qemu-img, the
// passphrase in a 0600 file.
func decryptBlob(t *testing.T, store *blob.Store, u, pass string, size int) []byte {
	t.Helper()
	bucket, key, err := blob.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	enc := filepath.Join(dir, "disk.luks")
	if err := store.Client().FGetObject(context.Background(), bucket, key, enc, minio.GetObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, "pass")
	if err := os.WriteFile(pf, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "plain.raw")
	cmd := exec.Command("qemu-img", "convert", "--object", "secret,id=s,file="+pf+",format=raw", "--image-opts",
		"driver=luks,key-secret=s,file.filename="+enc, "-O", "raw", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size {
		t.Fatalf("decrypted %d bytes, want %d", len(got), size)
	}
	return got
}

// objectSHA256 hashes an s3:// object.
func objectSHA256(t *testing.T, store *blob.Store, u string) string {
	t.Helper()
	bucket, key, err := blob.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := store.Client().GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	h := sha256.New()
	if _, err := io.Copy(h, obj); err != nil {
		t.Fatalf("read %s: %v", u, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
