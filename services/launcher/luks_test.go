package launcher_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/sealbox"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher"
)

// TestLUKSDisk boots a VM whose disk is a LUKS image made by the catalog's
// encrypt saga and crypto-luks: QEMU opens a qcow2 overlay over the LUKS
// blob with the passphrase from a 0600 file, which goes with the VM. The
// passphrase appears in no event and no KV value. An image naming a
// secret crypto-luks does not have fails with the reason.
func TestLUKSDisk(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "qemu-img")
	h := newHarness(t)
	h.startCryptoLUKS()
	token := "luks-" + testenv.Unique()
	kernel, initrd := bootImages(t, h, readyScript(token, false))
	plain := h.importFile(rawDisk(t, 8<<20, "plain-text"), schemas.ImageCreate{Name: "plain", Type: "OS"})
	m, err := h.cli.Call(h.ctx, "catalog", "image-encrypt", schemas.ImageEncrypt{ID: plain.ID, Name: "sealed"}, []string{"image-created"})
	if err != nil {
		t.Fatalf("image-encrypt: %v", err)
	}
	var created schemas.Image
	mustJSON(t, m.Data, &created)
	enc := h.waitImage(created.ID, func(i schemas.Image) bool { return i.State != "LOCKED" }, "encrypted")
	secret := enc.Attributes[launcher.LUKSSecretAttr]
	if enc.State != "READY" || enc.Format != "luks" || secret == "" {
		t.Fatalf("encrypted image: %+v", enc)
	}
	pass := passphrase(t, h, secret)

	tid := h.createTemplate("luks", fmt.Sprintf(`DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE_ID=%d]" ]
`, enc.ID, kernel.ID, initrd.ID))
	id := h.instantiate(tid, "")
	vm := h.waitVM(id, schemas.VMStatePoweroff, bootTimeout)
	if d := vm.Disks[0]; !d.LUKS || d.Format != "luks" || d.Persistent {
		t.Errorf("disk: %+v", d)
	}
	if !strings.Contains(h.console(id), "token="+token) {
		t.Fatalf("console lacks the token:\n%s", h.console(id))
	}
	secretFile := filepath.Join(h.work, "vms", fmt.Sprint(id), "disk-0.secret")
	fi, err := os.Stat(secretFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("passphrase file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(secretFile); string(b) != pass {
		t.Error("the passphrase file does not hold the image's passphrase")
	}

	h.mustCall(schemas.CommandLauncherTerminate, schemas.VMAction{ID: id}, schemas.EventLauncherVMStateChanged)
	h.waitVM(id, schemas.VMStateDone, time.Minute)
	if _, err := os.Stat(secretFile); !os.IsNotExist(err) {
		t.Errorf("the passphrase file is left after DONE: %v", err)
	}
	if img := h.image(enc.ID); img.State != "READY" || img.RVMs != 0 {
		t.Errorf("LUKS image after terminate: %s rvms %d", img.State, img.RVMs)
	}
	for _, msg := range h.rec.All(func(*nats.Msg) bool { return true }) {
		if strings.Contains(string(msg.Data), pass) {
			t.Errorf("event %s carries the passphrase", msg.Subject)
		}
	}
	noPassInKV(t, h, pass)

	// An image whose secret crypto-luks no longer has.
	// (as the catalog, the one that may delete a secret)
	if _, err := h.connect(schemas.ServiceCatalog).Command(h.ctx, "crypto-luks", "secret-delete", schemas.CryptoLuksSecretDelete{Secret: secret, ImageID: enc.ID}); err != nil {
		t.Fatal(err)
	}
	priv, err := sealbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	probe := map[string]string{"secret": secret, "public_key": sealbox.EncodePublicKey(priv.PublicKey())}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ans map[string]any
		err := h.cli.Query(h.ctx, "crypto-luks", "secret", probe, &ans)
		if bus.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("crypto-luks still has secret %s: %v", secret, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	bad := h.instantiate(tid, "")
	vb := h.waitFinal(bad)
	if vb.State != schemas.VMStateFailed || !strings.Contains(vb.Error, secret) {
		t.Errorf("VM with an unknown secret: %s %q", vb.State, vb.Error)
	}
	if img := h.image(enc.ID); img.RVMs != 0 {
		t.Errorf("LUKS image locked after the failed VM: rvms %d", img.RVMs)
	}
	h.noQEMULeft()
}

// passphrase asks crypto-luks for a secret's passphrase, as the launcher
// does.
func passphrase(t *testing.T, h *harness, secret string) string {
	t.Helper()
	priv, err := sealbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		Sealed string `json:"sealed"`
	}
	req := map[string]string{"secret": secret, "public_key": sealbox.EncodePublicKey(priv.PublicKey())}
	if err := h.cli.Query(h.ctx, "crypto-luks", "secret", req, &ans); err != nil {
		t.Fatal(err)
	}
	sealed, err := base64.StdEncoding.DecodeString(ans.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sealbox.Open(priv, sealed)
	if err != nil {
		t.Fatal(err)
	}
	return string(p)
}

// noPassInKV reads every value of the launcher's buckets.
func noPassInKV(t *testing.T, h *harness, pass string) {
	t.Helper()
	js := testenv.JetStream(t, h.url) // the witness reads every bucket
	for _, bucket := range []string{"slipway_launcher_vms", "slipway_launcher_templates", "slipway_launcher_dedup"} {
		kv, err := js.KeyValue(context.Background(), bucket)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.Keys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			e, err := kv.Get(context.Background(), k)
			if err == nil && strings.Contains(string(e.Value()), pass) {
				t.Errorf("KV %s/%s holds the passphrase", bucket, k)
			}
		}
	}
}
