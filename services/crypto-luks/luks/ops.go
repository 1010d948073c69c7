package luks

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/diskspace"
)

// Progress receives bytes done of total while qemu-img converts.
type Progress func(done, total int64)

// Encrypt writes src (a raw or qcow2 file, as declared by srcFormat and
// checked against its header first) to dst as a new LUKS volume whose key
// slot 0 opens with pass. dst must not exist; it is removed on failure.
func (r *Runner) Encrypt(ctx context.Context, src, srcFormat, dst string, pass []byte, progress Progress) error {
	if err := checkPath(src); err != nil {
		return err
	}
	if err := checkPath(dst); err != nil {
		return err
	}
	qfmt, virtual, err := CheckSource(src, srcFormat)
	if err != nil {
		return err // the caller names the source better than its local path
	}
	var w io.Writer
	if progress != nil {
		w = &percentWriter{report: func(pct float64) { progress(int64(pct/100*float64(virtual)), virtual) }}
	}
	what := fmt.Sprintf("encrypt %s (%s) into LUKS", filepath.Base(src), srcFormat)
	return r.newVolume(ctx, w, what, dst, virtual, pass, []string{"convert", "-p", "-f", qfmt, "-O", "luks"}, src, dst)
}

// Create makes an empty LUKS volume of size bytes at dst, key slot 0 opened
// by pass. dst must not exist.
func (r *Runner) Create(ctx context.Context, dst string, size int64, pass []byte) error {
	if err := checkPath(dst); err != nil {
		return err
	}
	if size <= 0 || size%512 != 0 {
		return fmt.Errorf("LUKS volume size %d: want a positive multiple of 512 bytes", size)
	}
	return r.newVolume(ctx, nil, "create LUKS volume", dst, size, pass, []string{"create", "-q", "-f", "luks"}, dst, strconv.FormatInt(size, 10))
}

// newVolume writes a new LUKS volume at dst, its key slot 0 opened by pass,
// with qemu-img verb (its arguments up to the key's options) and then
// operands, once dst is known not to exist and its filesystem to have room
// for a payload of size bytes. w gets qemu-img's output; what names the
// job in the error of a run that fails, which removes dst.
func (r *Runner) newVolume(ctx context.Context, w io.Writer, what, dst string, size int64, pass []byte, verb []string, operands ...string) error {
	if err := refuseExisting(dst); err != nil {
		return err
	}
	if err := diskspace.Ensure(filepath.Dir(dst), volumeBytes(size)); err != nil {
		return err
	}
	objs, cleanup, err := r.secrets(pass)
	if err != nil {
		return err
	}
	defer cleanup()
	args := append(append(verb, objs...), "-o", "key-secret=sec0,iter-time="+r.iterMillis())
	if _, err := r.run(ctx, w, append(args, operands...)...); err != nil {
		os.Remove(dst)
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Decrypt writes the payload of the LUKS volume src to dst in format
// (raw or qcow2). It is how tests and operators check a volume; the
// service never decrypts.
func (r *Runner) Decrypt(ctx context.Context, src string, pass []byte, dst, format string) error {
	if err := checkPath(src); err != nil {
		return err
	}
	if err := checkPath(dst); err != nil {
		return err
	}
	if format != FormatRaw && format != FormatQcow2 {
		return fmt.Errorf("%w: decrypt to %q: want raw or qcow2", ErrFormat, format)
	}
	if err := isLUKS(src); err != nil {
		return err
	}
	objs, cleanup, err := r.secrets(pass)
	if err != nil {
		return err
	}
	defer cleanup()
	args := append([]string{"convert", "--image-opts"}, objs...)
	args = append(args, "-O", format, imageOpts(src, 0), dst)
	if _, err := r.run(ctx, nil, args...); err != nil {
		os.Remove(dst)
		return fmt.Errorf("decrypt %s: %w", filepath.Base(src), err)
	}
	return nil
}

// Verify checks that pass opens the volume at path: it reads the first
// sector through the decryption (qemu-img info alone does not unlock a key
// slot). A wrong passphrase gives ErrWrongPassphrase.
func (r *Runner) Verify(ctx context.Context, path string, pass []byte) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if err := isLUKS(path); err != nil {
		return err
	}
	objs, cleanup, err := r.secrets(pass)
	if err != nil {
		return err
	}
	defer cleanup()
	dir, err := r.tempDir()
	if err != nil {
		return err
	}
	out, err := os.CreateTemp(dir, ".luks-verify-*")
	if err != nil {
		return err
	}
	out.Close()
	defer os.Remove(out.Name())
	if err := checkPath(out.Name()); err != nil {
		return err
	}
	args := append([]string{"dd", "--image-opts"}, objs...)
	args = append(args, "-O", "raw", "bs=512", "count=1", "if="+imageOpts(path, 0), "of="+out.Name())
	if _, err := r.run(ctx, nil, args...); err != nil {
		return fmt.Errorf("open %s: %w", filepath.Base(path), err)
	}
	return nil
}

// AddKey makes key slot slot (or the lowest free one when slot < 0) open
// with newPass; unlock is a passphrase that opens the volume now. It
// returns the slot used.
func (r *Runner) AddKey(ctx context.Context, path string, unlock, newPass []byte, slot int) (int, error) {
	info, err := r.Info(ctx, path)
	if err != nil {
		return -1, err
	}
	switch {
	case slot < 0:
		if slot = info.FreeSlot(); slot < 0 {
			return -1, fmt.Errorf("%w: all %d key slots are in use; remove one first", ErrSlot, MaxSlots)
		}
	case slot >= MaxSlots:
		return -1, fmt.Errorf("%w %d: a LUKS1 header has slots 0 to %d", ErrSlot, slot, MaxSlots-1)
	case info.Slots[slot]:
		return -1, fmt.Errorf("%w %d is already in use (active: %s)", ErrSlot, slot, FormatSlots(info.Active()))
	}
	opts := fmt.Sprintf("state=active,new-secret=sec1,keyslot=%d,iter-time=%s", slot, r.iterMillis())
	if err := r.amend(ctx, path, opts, unlock, newPass); err != nil {
		return -1, fmt.Errorf("add key slot %d: %w", slot, err)
	}
	return slot, nil
}

// RemoveSlot erases key slot slot; unlock is a passphrase that opens the
// volume now (it may be the one in that slot). Erasing the last active slot
// is refused: it would make the data unreadable for good.
func (r *Runner) RemoveSlot(ctx context.Context, path string, unlock []byte, slot int) error {
	info, err := r.Info(ctx, path)
	if err != nil {
		return err
	}
	active := info.Active()
	switch {
	case slot < 0 || slot >= MaxSlots:
		return fmt.Errorf("%w %d: a LUKS1 header has slots 0 to %d", ErrSlot, slot, MaxSlots-1)
	case !info.Slots[slot]:
		return fmt.Errorf("%w %d is not in use (active: %s)", ErrSlot, slot, FormatSlots(active))
	case len(active) == 1:
		return fmt.Errorf("%w %d is the only active key slot: erasing it would make the data unreadable", ErrSlot, slot)
	}
	if err := r.amend(ctx, path, fmt.Sprintf("state=inactive,keyslot=%d", slot), unlock); err != nil {
		return fmt.Errorf("remove key slot %d: %w", slot, err)
	}
	return nil
}

// RemoveKey erases every key slot that old opens; unlock opens the volume
// through another slot. It fails, changing nothing, when old opens every
// active slot.
func (r *Runner) RemoveKey(ctx context.Context, path string, unlock, old []byte) error {
	if err := r.amend(ctx, path, "state=inactive,old-secret=sec1", unlock, old); err != nil {
		return fmt.Errorf("remove a passphrase's key slots: %w", err)
	}
	return nil
}

// ChangePassphrase replaces old by newPass: a new key slot for newPass,
// then every slot of old erased. It returns the new slot. Other
// passphrases' slots stay.
func (r *Runner) ChangePassphrase(ctx context.Context, path string, old, newPass []byte) (int, error) {
	slot, err := r.AddKey(ctx, path, old, newPass, -1)
	if err != nil {
		return -1, err
	}
	if err := r.RemoveKey(ctx, path, newPass, old); err != nil {
		return slot, err
	}
	return slot, nil
}

func (r *Runner) amend(ctx context.Context, path, opts string, passes ...[]byte) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if err := isLUKS(path); err != nil {
		return err
	}
	objs, cleanup, err := r.secrets(passes...)
	if err != nil {
		return err
	}
	defer cleanup()
	args := append([]string{"amend", "--image-opts"}, objs...)
	args = append(args, "-o", opts, imageOpts(path, 0))
	_, err = r.run(ctx, nil, args...)
	return err
}

func refuseExisting(p string) error {
	if _, err := os.Lstat(p); err == nil {
		return fmt.Errorf("%s exists already", p)
	}
	return nil
}

// FormatSlots lists key slot numbers for a message: "0, 2", or "none".
func FormatSlots(v []int) string {
	if len(v) == 0 {
		return "none"
	}
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// percentWriter parses qemu-img -p output: "    (12.34/100%)\r".
type percentWriter struct {
	report func(pct float64)
	buf    []byte
}

func (w *percentWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		end := strings.Index(string(w.buf), "/100%)")
		if end < 0 {
			if len(w.buf) > 256 {
				w.buf = w.buf[len(w.buf)-64:]
			}
			return len(p), nil
		}
		start := strings.LastIndexByte(string(w.buf[:end]), '(')
		if start >= 0 {
			if pct, err := strconv.ParseFloat(string(w.buf[start+1:end]), 64); err == nil {
				w.report(pct)
			}
		}
		w.buf = w.buf[end+len("/100%)"):]
	}
}

// volumeBytes is what a LUKS volume of virtual bytes takes on disk: every
// sector is written (encrypted zeros are not zeros), plus the header and
// key slots (16 MiB with qemu's defaults), plus a margin.
func volumeBytes(virtual int64) int64 { return virtual + 32<<20 }
