package luks

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/testenv"
)

// runner returns a Runner whose qemu-img is a wrapper that records every
// argv (then runs the real qemu-img), and the log it writes, so tests can
// check no passphrase ever reached a command line.
func runner(t *testing.T) (*Runner, string) {
	t.Helper()
	testenv.Program(t, "qemu-img", "apt-get install qemu-utils")
	dir := t.TempDir()
	log := filepath.Join(dir, "argv.log")
	wrapper := testenv.Script(t, "qemu-img", "#!/bin/sh\nprintf '%s\\n' \"$*\" >> "+log+"\nexec qemu-img \"$@\"\n")
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Every secret file and scratch output is gone after each call.
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("left in the temp dir: %v", left)
		}
	})
	return &Runner{Binary: wrapper, TempDir: tmp, IterTime: 10 * time.Millisecond}, log
}

func checkArgv(t *testing.T, log string, passes ...[]byte) {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("secret,id=sec0,file=")) {
		t.Fatalf("argv log does not show the secret objects:\n%s", data)
	}
	for _, p := range passes {
		if bytes.Contains(data, p) {
			t.Fatalf("a passphrase appears on a qemu-img command line:\n%s", data)
		}
	}
}

func pattern(t *testing.T, path string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data[:size/2]); err != nil { // half random, half zeros
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

func pass(t *testing.T) []byte {
	t.Helper()
	p, err := NewPassphrase()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewPassphrase(t *testing.T) {
	a, b := pass(t), pass(t)
	if len(a) != 43 || bytes.Equal(a, b) {
		t.Fatalf("passphrases %q %q: want 43 characters, different each time", a, b)
	}
	if strings.Trim(string(a), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Fatalf("passphrase %q is not base64url", a)
	}
}

func TestEncryptDecryptRawAndQcow2(t *testing.T) {
	r, log := runner(t)
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	want := pattern(t, src, 4<<20)
	qcow := filepath.Join(dir, "src.qcow2")
	testenv.Exec(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", src, qcow)
	p := pass(t)
	for _, c := range []struct{ src, format string }{{src, FormatRaw}, {qcow, FormatQcow2}} {
		dst := filepath.Join(dir, "out-"+c.format+".luks")
		var last, total int64
		if err := r.Encrypt(ctx, c.src, c.format, dst, p, func(d, tot int64) { last, total = d, tot }); err != nil {
			t.Fatal(err)
		}
		if total != 4<<20 || last != total {
			t.Errorf("%s: progress ended at %d of %d, want %d of %d", c.format, last, total, 4<<20, 4<<20)
		}
		if err := isLUKS(dst); err != nil {
			t.Fatalf("%s: output: %v", c.format, err)
		}
		enc, _ := os.ReadFile(dst)
		if bytes.Contains(enc, want[:4096]) {
			t.Fatalf("%s: the LUKS file contains the plaintext", c.format)
		}
		info, err := r.Info(ctx, dst)
		if err != nil {
			t.Fatal(err)
		}
		if info.VirtualSize != 4<<20 || len(info.Active()) != 1 || !info.Slots[0] {
			t.Fatalf("%s: info %+v", c.format, info)
		}
		plain := filepath.Join(dir, "plain-"+c.format+".raw")
		if err := r.Decrypt(ctx, dst, p, plain, FormatRaw); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(plain)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: decrypted data differs from the source", c.format)
		}
		if err := r.Decrypt(ctx, dst, pass(t), filepath.Join(dir, "bad.raw"), FormatRaw); !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("%s: decrypt with another passphrase: %v", c.format, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "bad.raw")); err == nil {
			t.Fatal("a failed decrypt left its output")
		}
	}
	checkArgv(t, log, p)
}

func TestSourceFormatChecked(t *testing.T) {
	r, _ := runner(t)
	ctx := context.Background()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	pattern(t, raw, 1<<20)
	qcow := filepath.Join(dir, "disk.qcow2")
	testenv.Exec(t, "qemu-img", "create", "-f", "qcow2", qcow, "1M")
	backed := filepath.Join(dir, "backed.qcow2")
	testenv.Exec(t, "qemu-img", "create", "-f", "qcow2", "-b", qcow, "-F", "qcow2", backed)
	p := pass(t)
	for _, c := range []struct{ src, declared, want string }{
		{qcow, FormatRaw, "declared raw but its header says qcow2"},
		{raw, FormatQcow2, "declared qcow2 but its header says raw"},
		{backed, FormatQcow2, "backing file"},
		{raw, "vmdk", "only raw, iso and qcow2"},
	} {
		dst := filepath.Join(dir, "out.luks")
		err := r.Encrypt(ctx, c.src, c.declared, dst, p, nil)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s as %s: err %v, want ErrFormat mentioning %q", filepath.Base(c.src), c.declared, err, c.want)
		}
		if _, err := os.Stat(dst); err == nil {
			t.Fatal("a refused source left an output")
		}
	}
	// A LUKS volume is refused as a source too.
	luksFile := filepath.Join(dir, "v.luks")
	if err := r.Create(ctx, luksFile, 1<<20, p); err != nil {
		t.Fatal(err)
	}
	if err := r.Encrypt(ctx, luksFile, FormatRaw, filepath.Join(dir, "o.luks"), p, nil); !errors.Is(err, ErrFormat) {
		t.Errorf("LUKS as raw: %v", err)
	}
	if _, err := r.Info(ctx, raw); !errors.Is(err, ErrNotLUKS) {
		t.Errorf("info of a raw file: %v", err)
	}
	if err := r.Encrypt(ctx, "relative.raw", FormatRaw, filepath.Join(dir, "x.luks"), p, nil); !errors.Is(err, ErrPath) {
		t.Errorf("relative path: %v", err)
	}
	if err := r.Encrypt(ctx, "json:{}", FormatRaw, filepath.Join(dir, "x.luks"), p, nil); !errors.Is(err, ErrPath) {
		t.Errorf("json: path: %v", err)
	}
}

func TestCreateSlotsAndRotation(t *testing.T) {
	r, log := runner(t)
	ctx := context.Background()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol.luks")
	p0, p1, p2 := pass(t), pass(t), pass(t)
	if err := r.Create(ctx, vol, 8<<20, p0); err != nil {
		t.Fatal(err)
	}
	if err := r.Create(ctx, vol, 8<<20, p0); err == nil {
		t.Fatal("create over an existing file succeeded")
	}
	info, err := r.Info(ctx, vol)
	if err != nil || info.VirtualSize != 8<<20 || !info.Slots[0] || len(info.Active()) != 1 {
		t.Fatalf("new volume: %+v %v", info, err)
	}
	if err := r.Verify(ctx, vol, p0); err != nil {
		t.Fatalf("verify slot 0: %v", err)
	}
	if err := r.Verify(ctx, vol, p1); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("verify with a passphrase of no slot: %v", err)
	}
	// A wrong unlock passphrase cannot add a key.
	if _, err := r.AddKey(ctx, vol, p2, p1, -1); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("add a key with a wrong passphrase: %v", err)
	}
	slot, err := r.AddKey(ctx, vol, p0, p1, -1)
	if err != nil || slot != 1 {
		t.Fatalf("add key: slot %d, %v", slot, err)
	}
	if _, err := r.AddKey(ctx, vol, p0, p2, 1); !errors.Is(err, ErrSlot) {
		t.Fatalf("add into a used slot: %v", err)
	}
	if _, err := r.AddKey(ctx, vol, p0, p2, 9); !errors.Is(err, ErrSlot) {
		t.Fatalf("add into slot 9: %v", err)
	}
	if err := r.Verify(ctx, vol, p1); err != nil {
		t.Fatalf("verify slot 1: %v", err)
	}
	// Remove slot 0 using slot 1's passphrase: p0 no longer opens.
	if err := r.RemoveSlot(ctx, vol, p1, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, vol, p0); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("removed passphrase still opens: %v", err)
	}
	if err := r.RemoveSlot(ctx, vol, p1, 1); !errors.Is(err, ErrSlot) || !strings.Contains(err.Error(), "only active") {
		t.Fatalf("remove the last slot: %v", err)
	}
	if err := r.RemoveSlot(ctx, vol, p1, 5); !errors.Is(err, ErrSlot) {
		t.Fatalf("remove an empty slot: %v", err)
	}
	// Rotate p1 → p2.
	slot, err = r.ChangePassphrase(ctx, vol, p1, p2)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, vol, p2); err != nil {
		t.Fatalf("new passphrase: %v", err)
	}
	if err := r.Verify(ctx, vol, p1); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("old passphrase after rotation: %v", err)
	}
	info, _ = r.Info(ctx, vol)
	if active := info.Active(); len(active) != 1 || active[0] != slot {
		t.Fatalf("after rotation active slots %v, want [%d]", active, slot)
	}
	// The only passphrase cannot remove itself.
	if err := r.RemoveKey(ctx, vol, p2, p2); err == nil {
		t.Fatal("removing the only passphrase succeeded")
	}
	if err := r.Verify(ctx, vol, p2); err != nil {
		t.Fatalf("after the refused removal: %v", err)
	}
	checkArgv(t, log, p0, p1, p2)
}

func TestPercentWriter(t *testing.T) {
	var got []float64
	w := &percentWriter{report: func(p float64) { got = append(got, p) }}
	for _, chunk := range []string{"    (0.00/100%)\r", "    (12.", "50/100%)\r    (100.00/100%)\r\n"} {
		w.Write([]byte(chunk))
	}
	if len(got) != 3 || got[0] != 0 || got[1] != 12.5 || got[2] != 100 {
		t.Fatalf("parsed %v", got)
	}
}

// qemu-img runs through the shared confined runner (pkg/qemuimg): under
// prlimit with this package's limits (4 GiB, 6 h by default, or the
// Runner's), with run.ChildEnv as its whole environment, in its own process
// group.
func TestQemuImgIsConfined(t *testing.T) {
	r, _ := runner(t)
	t.Setenv("SLIPWAY_LUKS_KEK", "must-not-leak")
	dir := t.TempDir()
	log := filepath.Join(dir, "confined.log")
	wrapper := testenv.Script(t, "qemu-img", "#!/bin/sh\n{ echo \"as=$(ulimit -v) cpu=$(ulimit -t) pid=$$ pgrp=$(cut -d' ' -f5 /proc/$$/stat)\"; tr '\\0' ' ' < /proc/$$/environ; echo; } >> "+log+"\nexec qemu-img \"$@\"\n")
	ctx := context.Background()
	if err := r.Create(ctx, filepath.Join(dir, "a.luks"), 1<<20, pass(t)); err != nil {
		t.Fatal(err)
	}
	// Info runs qemu-img once (no PBKDF2 timing, so no retry).
	r.Binary = wrapper
	if _, err := r.Info(ctx, filepath.Join(dir, "a.luks")); err != nil {
		t.Fatal(err)
	}
	r.AddressSpace, r.CPUSeconds = 3<<30, 1234
	if _, err := r.Info(ctx, filepath.Join(dir, "a.luks")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 4 {
		t.Fatalf("log:\n%s", data)
	}
	for i, want := range []string{
		fmt.Sprintf("as=%d cpu=%d", DefaultAddressSpace>>10, DefaultCPUSeconds),
		fmt.Sprintf("as=%d cpu=%d", (3<<30)>>10, 1234),
	} {
		limits, env := lines[2*i], strings.TrimSpace(lines[2*i+1])
		if !strings.HasPrefix(limits, want+" ") {
			t.Errorf("call %d: %s, want %s", i, limits, want)
		}
		var pid, pgrp string
		fmt.Sscanf(limits[strings.Index(limits, "pid="):], "pid=%s pgrp=%s", &pid, &pgrp)
		if pid == "" || pid != pgrp {
			t.Errorf("call %d: %s: want qemu-img in its own process group", i, limits)
		}
		if want := strings.Join(run.ChildEnv(), " "); env != want {
			t.Errorf("call %d: environment %q, want %q", i, env, want)
		}
	}
}

// TestCPUTimingFailureIsRetriedThenNamed: qemu's PBKDF2 timing can fail on
// a busy virtual CPU, which cannot be caused on demand; a wrapper makes
// the real qemu-img's create fail the way qemu words it, every time. The
// runner tries cpuUsageAttempts times, then says ErrCPUTiming, which the
// service retries later rather than refusing the command.
func TestCPUTimingFailureIsRetriedThenNamed(t *testing.T) {
	testenv.Program(t, "qemu-img", "apt-get install qemu-utils")
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	wrapper := testenv.Script(t, "qemu-img", "#!/bin/sh\nif [ \"$1\" = create ]; then echo run >> "+runs+
		"; echo \"qemu-img: $2: "+cpuUsageMsg+"\" >&2; exit 1; fi\nexec qemu-img \"$@\"\n")
	r := &Runner{Binary: wrapper, TempDir: dir, IterTime: 10 * time.Millisecond}
	err := r.Create(context.Background(), filepath.Join(dir, "disk.luks"), 1<<20, pass(t))
	if !errors.Is(err, ErrCPUTiming) || !strings.Contains(err.Error(), cpuUsageMsg) {
		t.Fatalf("create: %v, want ErrCPUTiming with qemu's message", err)
	}
	data, _ := os.ReadFile(runs)
	if n := strings.Count(string(data), "run"); n != cpuUsageAttempts {
		t.Errorf("qemu-img create ran %d times, want %d", n, cpuUsageAttempts)
	}
}
