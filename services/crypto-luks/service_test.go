package cryptoluks

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/keywrap/keywraptest"
	"github.com/slipway/slipway/services/crypto-luks/luks"
)

// sourceImage writes size bytes of known content (random MiB runs between
// zero runs, so both data and holes are checked) and stores them as
// s3://src/<name>; it returns the content's SHA-256.
func (e *env) sourceImage(name string, size int64) [32]byte {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		e.t.Fatal(err)
	}
	h := sha256.New()
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		clear(chunk)
		if (off>>20)%3 != 2 {
			if _, err := rand.Read(chunk); err != nil {
				e.t.Fatal(err)
			}
		}
		f.Write(chunk)
		h.Write(chunk)
	}
	f.Close()
	r, _ := os.Open(path)
	defer r.Close()
	if _, err := e.store.Put(context.Background(), "src", "images/"+name, r, size); err != nil {
		e.t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// decrypt opens the LUKS file with qemu-img and the given passphrase
// (through a 0600 secret file, as anyone should) and returns the SHA-256 of
// the plaintext, or qemu-img's error.
func decrypt(t *testing.T, path string, pass []byte) ([32]byte, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "plain.raw")
	r := &luks.Runner{TempDir: t.TempDir()}
	if err := r.Decrypt(context.Background(), path, pass, out, luks.FormatRaw); err != nil {
		return [32]byte{}, err
	}
	defer os.Remove(out)
	return testenv.FileSHA256(t, out), nil
}

func opens(t *testing.T, path string, pass []byte) error {
	r := &luks.Runner{TempDir: t.TempDir()}
	return r.Verify(context.Background(), path, pass)
}

func intp(n int) *int { return &n }

// TestService drives crypto-luks over a real NATS, MinIO and qemu-img:
// encrypt 64 MiB and decrypt it back, an empty volume, key slots,
// refusals, KEK rotation, and at the end a scan for passphrases anywhere.
func TestService(t *testing.T) {
	e := newEnv(t)
	k1 := keywraptest.Key(t)
	e.startService(keywraptest.New(t, k1))

	var enc schemas.CryptoLuksEncrypted
	e.run(t, "encrypt 64 MiB and decrypt it back", func(t *testing.T) {
		want := e.sourceImage("disk.raw", 64<<20)
		cmd := schemas.CryptoLuksEncrypt{ImageID: 7, Source: "s3://src/images/disk.raw", SourceFormat: schemas.DiskFormatRaw, Dest: dst(7)}
		e.mustCommand("encrypt", cmd, "encrypted", &enc)
		if enc.ImageID != 7 || enc.Dest != cmd.Dest || enc.VirtualSize != 64<<20 || enc.Size <= 64<<20 {
			t.Fatalf("encrypted event %+v", enc)
		}
		path := e.fetch(enc.Dest, "7.luks")
		if got := testenv.FileSHA256(t, path); string(got[:]) == string(want[:]) {
			t.Fatal("the stored blob is the plaintext")
		}
		if sum := testenv.FileSHA256(t, path); schemasHex(sum) != enc.SHA256 {
			t.Fatalf("event sha256 %s, stored blob %s", enc.SHA256, schemasHex(sum))
		}
		testenv.AssertS3Checksum(t, context.Background(), e.store, enc.Dest, enc.S3Checksum)
		pass := e.mustPassphrase(enc.Secret, nil)
		if len(pass) != 43 {
			t.Fatalf("passphrase of %d characters, want 43 (32 random bytes, base64url)", len(pass))
		}
		got, err := decrypt(t, path, pass)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatal("decrypted content differs from the source")
		}
		if _, err := decrypt(t, path, []byte("not the passphrase")); !errors.Is(err, luks.ErrWrongPassphrase) {
			t.Fatalf("decrypt with a wrong passphrase: %v", err)
		}
		progress := e.rec.All(func(m *nats.Msg) bool {
			return strings.HasPrefix(m.Subject, "slipway.evt.crypto-luks.progress.7") && strings.Contains(string(m.Data), `"phase":"encrypt"`)
		})
		if len(progress) == 0 {
			t.Error("no encrypt progress event")
		}
		// The same image again (a saga resending its step with a new ID):
		// the same secret, and the volume opens with the same passphrase.
		var again schemas.CryptoLuksEncrypted
		e.mustCommand("encrypt", cmd, "encrypted", &again)
		if again.Secret != enc.Secret {
			t.Fatalf("second encrypt of image 7: secret %s, first %s", again.Secret, enc.Secret)
		}
		enc = again
	})

	e.run(t, "empty volume", func(t *testing.T) {
		var ev schemas.CryptoLuksEncrypted
		e.mustCommand("create", schemas.CryptoLuksCreate{ImageID: 8, SizeMiB: 16, Dest: dst(8)}, "encrypted", &ev)
		if ev.VirtualSize != 16<<20 || ev.Secret == enc.Secret {
			t.Fatalf("create: %+v", ev)
		}
		path := e.fetch(ev.Dest, "8.luks")
		info, err := (&luks.Runner{}).Info(context.Background(), path)
		if err != nil || info.VirtualSize != 16<<20 || len(info.Active()) != 1 {
			t.Fatalf("empty volume: %+v %v", info, err)
		}
		if err := opens(t, path, e.mustPassphrase(ev.Secret, nil)); err != nil {
			t.Fatal(err)
		}
	})

	e.run(t, "bad input", func(t *testing.T) {
		// A qcow2 declared raw: refused, nothing left behind.
		qc := filepath.Join(t.TempDir(), "d.qcow2")
		testenv.Exec(t, "qemu-img", "create", "-f", "qcow2", qc, "4M")
		f, _ := os.Open(qc)
		st, _ := f.Stat()
		if _, err := e.store.Put(context.Background(), "src", "images/d.qcow2", f, st.Size()); err != nil {
			t.Fatal(err)
		}
		f.Close()
		e.refused("encrypt", schemas.CryptoLuksEncrypt{ImageID: 20, Source: "s3://src/images/d.qcow2", SourceFormat: schemas.DiskFormatRaw,
			Dest: dst(20)}, "s3://src/images/d.qcow2: unexpected disk format: declared raw but its header says qcow2")
		e.refused("encrypt", schemas.CryptoLuksEncrypt{ImageID: 21, Source: "s3://src/images/missing.raw", SourceFormat: schemas.DiskFormatRaw,
			Dest: dst(21)}, "s3://src/images/missing.raw")
		e.refused("encrypt", schemas.CryptoLuksEncrypt{ImageID: 22, Source: "s3://src/images/d.qcow2", SourceFormat: schemas.DiskFormatVMDK,
			Dest: dst(22)}, "only raw, iso and qcow2")
		e.refused("encrypt", json.RawMessage(`{"image_id": 23, "source": "http://x/y"}`), "invalid command")
		for _, id := range []int64{20, 21, 22} {
			if keys, _ := e.store.List(context.Background(), "dst", "images/"+idToken(id)+"/"); len(keys) != 0 {
				t.Errorf("image %d: failed encrypt left %v", id, keys)
			}
			var secrets struct{ Secrets []schemas.LuksSecret }
			if err := e.bus.Query(context.Background(), Name, "secrets", map[string]int64{"image_id": id}, &secrets); err != nil || len(secrets.Secrets) != 0 {
				t.Errorf("image %d: failed encrypt left secrets %+v (%v)", id, secrets.Secrets, err)
			}
		}
		left, _ := os.ReadDir(e.svc.w.Dir())
		if len(left) != 0 {
			t.Errorf("work directory not empty after the jobs: %v", left)
		}
		// Queries: unknown secret, bad key.
		_, err := e.passphrase("0b8e7c9a-3f1d-4c2e-9a6b-5d4e3f2a1b0c", nil)
		if !bus.IsNotFound(err) || !strings.Contains(err.Error(), "unknown secret") {
			t.Errorf("unknown secret: %v", err)
		}
		err = e.bus.Query(context.Background(), Name, "secret", schemas.CryptoLuksSecretRequest{Secret: enc.Secret, PublicKey: "AAAA"}, nil)
		if bus.ErrorCode(err) != bus.CodeInvalid || !strings.Contains(err.Error(), "public_key") {
			t.Errorf("bad public key: %v", err)
		}
	})

	e.run(t, "key slots", func(t *testing.T) {
		// Whether the image may change now (LUKS, no VM using it) is the
		// catalog's lock (saga slots, tested in services/catalog):
		// crypto-luks knows an image by its own record.
		e.refused("slot-add", schemas.CryptoLuksSlotAdd{ImageID: 99}, "image 99 has no LUKS secret")

		p0 := e.mustPassphrase(enc.Secret, nil)
		var ch schemas.CryptoLuksSlotsChanged
		e.mustCommand("slot-add", schemas.CryptoLuksSlotAdd{ImageID: 7}, "slots-changed", &ch)
		if !equalInts(ch.Slots, 0, 1) || !equalInts(ch.Added, 1) || ch.Primary != 0 || ch.Dest != enc.Dest {
			t.Fatalf("slot-add: %+v", ch)
		}
		p1 := e.mustPassphrase(enc.Secret, intp(1))
		path := e.fetch(enc.Dest, "7-a.luks")
		if schemasHex(testenv.FileSHA256(t, path)) != ch.SHA256 {
			t.Fatal("slots-changed sha256 is not the stored blob's")
		}
		for i, p := range [][]byte{p0, p1} {
			if err := opens(t, path, p); err != nil {
				t.Fatalf("after slot-add, passphrase of slot %d: %v", i, err)
			}
		}
		e.refused("slot-remove", schemas.CryptoLuksSlotRemove{ImageID: 7, Slot: 5}, "not in use")

		e.mustCommand("slot-remove", schemas.CryptoLuksSlotRemove{ImageID: 7, Slot: 0}, "slots-changed", &ch)
		if !equalInts(ch.Slots, 1) || ch.Primary != 1 || !equalInts(ch.Removed, 0) {
			t.Fatalf("slot-remove: %+v", ch)
		}
		path = e.fetch(enc.Dest, "7-b.luks")
		if err := opens(t, path, p0); !errors.Is(err, luks.ErrWrongPassphrase) {
			t.Fatalf("removed slot 0's passphrase: %v", err)
		}
		if _, err := e.passphrase(enc.Secret, intp(0)); !bus.IsNotFound(err) {
			t.Fatalf("secret query for a removed slot: %v", err)
		}
		e.refused("slot-remove", schemas.CryptoLuksSlotRemove{ImageID: 7, Slot: 1}, "only key slot")

		e.mustCommand("rotate", schemas.CryptoLuksRotate{ImageID: 7}, "slots-changed", &ch)
		if len(ch.Slots) != 1 || ch.Slots[0] == 1 || !equalInts(ch.Removed, 1) {
			t.Fatalf("rotate: %+v", ch)
		}
		p2 := e.mustPassphrase(enc.Secret, nil)
		if bytes.Equal(p2, p1) {
			t.Fatal("rotate kept the passphrase")
		}
		path = e.fetch(enc.Dest, "7-c.luks")
		if err := opens(t, path, p1); !errors.Is(err, luks.ErrWrongPassphrase) {
			t.Fatalf("old passphrase after rotate: %v", err)
		}
		if sum, err := decrypt(t, path, p2); err != nil {
			t.Fatalf("new passphrase after rotate: %v", err)
		} else if sum2, _ := decrypt(t, e.fetch(enc.Dest, "7-d.luks"), p2); sum != sum2 {
			t.Fatal("unstable content")
		}
		var slots schemas.LuksSecret
		if err := e.bus.Query(context.Background(), Name, "slots", map[string]int64{"image_id": 7}, &slots); err != nil {
			t.Fatal(err)
		}
		if len(slots.Slots) != 1 || int64(slots.Primary) != ch.Primary || slots.SHA256 != ch.SHA256 || slots.Pending {
			t.Fatalf("slots query: %+v", slots)
		}
	})

	e.run(t, "crash recovery of slot changes", func(t *testing.T) {
		ctx := context.Background()
		r := &luks.Runner{TempDir: t.TempDir()}
		rec, _, err := e.svc.db.get(ctx, enc.Secret)
		if err != nil {
			t.Fatal(err)
		}
		dk, err := e.svc.keys.Unwrap(rec.Secret, rec.Wrapped)
		if err != nil {
			t.Fatal(err)
		}
		primary := e.mustPassphrase(enc.Secret, nil)
		// A change that was uploaded, but whose record was never
		// committed (the process died in between).
		path := e.fetch(enc.Dest, "7-crash.luks")
		lost, _ := luks.NewPassphrase()
		slot, err := r.AddKey(ctx, path, primary, lost, -1)
		if err != nil {
			t.Fatal(err)
		}
		sealed, _ := dk.Seal(slotLabel(slot), lost)
		if _, err := e.svc.db.update(ctx, enc.Secret, func(r *Record) error {
			r.Pending = &Pending{Command: "crashed-1", Slot: slot, Passphrase: sealed}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(path)
		st, _ := f.Stat()
		bucket, key, _ := blob.ParseURL(enc.Dest)
		if _, err := e.store.Put(ctx, bucket, key, f, st.Size()); err != nil {
			t.Fatal(err)
		}
		f.Close()
		var ch schemas.CryptoLuksSlotsChanged
		e.mustCommand("slot-add", schemas.CryptoLuksSlotAdd{ImageID: 7}, "slots-changed", &ch)
		if len(ch.Slots) != 3 || !slicesContains(ch.Slots, int64(slot)) {
			t.Fatalf("after an uploaded but uncommitted change and a slot-add: %+v", ch)
		}
		if got := e.mustPassphrase(enc.Secret, intp(slot)); !bytes.Equal(got, lost) {
			t.Fatal("the uploaded change's passphrase was not kept")
		}
		// A change recorded but never uploaded: dropped, and it does not
		// get in the way of the next one.
		never, _ := luks.NewPassphrase()
		sealed, _ = dk.Seal(slotLabel(7), never)
		if _, err := e.svc.db.update(ctx, enc.Secret, func(r *Record) error {
			r.Pending = &Pending{Command: "crashed-2", Slot: 7, Passphrase: sealed}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		e.mustCommand("slot-remove", schemas.CryptoLuksSlotRemove{ImageID: 7, Slot: int64(slot)}, "slots-changed", &ch)
		if len(ch.Slots) != 2 || slicesContains(ch.Slots, int64(slot)) || slicesContains(ch.Slots, 7) {
			t.Fatalf("after a recorded but never uploaded change and a slot-remove: %+v", ch)
		}
		if rec, _, _ := e.svc.db.get(ctx, enc.Secret); rec.Pending != nil {
			t.Fatalf("pending change left: %+v", rec.Pending)
		}
		path = e.fetch(enc.Dest, "7-crash2.luks")
		if err := opens(t, path, lost); !errors.Is(err, luks.ErrWrongPassphrase) {
			t.Fatalf("removed slot %d still opens: %v", slot, err)
		}
		if err := opens(t, path, primary); err != nil {
			t.Fatalf("primary after recovery: %v", err)
		}
	})

	e.run(t, "KEK rotation", func(t *testing.T) {
		before := e.mustPassphrase(enc.Secret, nil)
		k2 := keywraptest.Key(t)
		// New KEK, old one listed: old secrets open before any re-wrap.
		e.startService(keywraptest.New(t, k2, k1))
		if p := e.mustPassphrase(enc.Secret, nil); !bytes.Equal(p, before) {
			t.Fatal("passphrase changed with the KEK")
		}
		e.refused("rotate-kek", schemas.CryptoLuksRotateKEK{ExpectKekID: "0123456789abcdef"}, "not 0123456789abcdef")
		var ev schemas.CryptoLuksKEKRotated
		e.mustCommand("rotate-kek", schemas.CryptoLuksRotateKEK{ExpectKekID: e.svc.keys.CurrentID()}, "kek-rotated", &ev)
		if ev.KekID != e.svc.keys.CurrentID() || ev.Secrets != 2 || ev.Rewrapped != 2 {
			t.Fatalf("kek-rotated: %+v", ev)
		}
		// Only the new KEK: every secret still opens its volume.
		e.startService(keywraptest.New(t, k2))
		path := e.fetch(enc.Dest, "7-kek.luks")
		if err := opens(t, path, e.mustPassphrase(enc.Secret, nil)); err != nil {
			t.Fatalf("after KEK rotation: %v", err)
		}
		var list struct{ Secrets []schemas.LuksSecret }
		if err := e.bus.Query(context.Background(), Name, "secrets", nil, &list); err != nil {
			t.Fatal(err)
		}
		for _, s := range list.Secrets {
			if s.KekID != ev.KekID {
				t.Errorf("secret %s still wrapped by %s", s.Secret, s.KekID)
			}
			if _, err := e.passphrase(s.Secret, nil); err != nil {
				t.Errorf("secret %s after rotation: %v", s.Secret, err)
			}
		}
		// Only the old KEK: refused, naming the problem.
		e.startService(keywraptest.New(t, k1))
		if _, err := e.passphrase(enc.Secret, nil); err == nil || !strings.Contains(err.Error(), "not configured") {
			t.Fatalf("old KEK alone: %v", err)
		}
		e.startService(keywraptest.New(t, k2))
	})

	e.run(t, "secret-delete", func(t *testing.T) {
		e.refused("secret-delete", schemas.CryptoLuksSecretDelete{Secret: enc.Secret, ImageID: 8}, "belongs to image 7")
		// Success publishes nothing (the catalog sends it and moves on):
		// wait for the secret to be gone.
		if _, err := e.bus.Command(context.Background(), Name, "secret-delete", schemas.CryptoLuksSecretDelete{Secret: enc.Secret, ImageID: 7}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := e.passphrase(enc.Secret, nil)
			if bus.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("secret still there after secret-delete: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Deleting it again is not an error: no failed event.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := e.bus.Call(ctx, Name, "secret-delete", schemas.CryptoLuksSecretDelete{Secret: enc.Secret, ImageID: 7}, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second secret-delete: %v", err)
		}
	})

	e.run(t, "no passphrase anywhere", func(*testing.T) { e.scanForLeaks() })
}

func slicesContains(v []int64, n int64) bool {
	for _, x := range v {
		if x == n {
			return true
		}
	}
	return false
}

func equalInts(got []int64, want ...int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func schemasHex(sum [32]byte) string {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 64)
	for i, b := range sum {
		out[2*i], out[2*i+1] = hexdigits[b>>4], hexdigits[b&15]
	}
	return string(out)
}

// An encryption still working at its job deadline (here a key derivation told to take
// longer than the deadline) ends once, as a final failure naming the deadline.
func TestJobDeadline(t *testing.T) {
	e := newEnv(t)
	e.startServiceWith(keywraptest.New(t), func(c *Config) {
		c.JobDeadline = time.Second
		c.IterTime = 5 * time.Second
		c.AckWait = 300 * time.Millisecond
	})
	e.sourceImage("slow.raw", 1<<20)
	start := time.Now()
	e.refused("encrypt", schemas.CryptoLuksEncrypt{ImageID: 30, Source: "s3://src/images/slow.raw",
		SourceFormat: schemas.DiskFormatRaw, Dest: dst(30)}, "the job ran longer than its deadline of 1s (SLIPWAY_JOB_DEADLINE)")
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("the refusal came after %s, long after the 1s deadline", took)
	}
}
