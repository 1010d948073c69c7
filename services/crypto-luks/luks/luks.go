// Package luks makes and changes LUKS volumes with qemu-img: encrypt a raw
// or qcow2 file into a LUKS file, create an empty LUKS volume, read its
// header, check a passphrase, and add, remove and replace key slots with
// `qemu-img amend` (QEMU 5.1 or later).
//
// Passphrases reach qemu-img only through secret objects read from files
// (`--object secret,id=…,file=<0600 file>,format=raw`) that exist just for
// the one call: never in argv, the environment or a log. Every call that
// writes a key slot passes an explicit iter-time (Runner.IterTime): the
// passphrases Slipway makes are 256 random bits, which no key stretching
// makes stronger, while every slot costs its iteration time again on each
// open. qemu-img still times PBKDF2 once per call to turn iter-time into an
// iteration count, and that measurement can fail on a busy or virtual CPU
// ("Unable to get accurate CPU usage"); such a call is run again, up to
// four times in all.
//
// qemu-img runs through pkg/qemuimg's Runner, the one the converter and the
// launcher use: under prlimit (Runner.AddressSpace and CPUSeconds, 4 GiB and
// 6 h by default), at a lower nice priority, with run.ChildEnv as its whole
// environment, in its own process group. Every file path it is given, and
// every path an --image-opts or secret object string is built from, has
// passed qemuimg.CheckPath.
package luks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/qemuimg"
)

// MaxSlots is how many key slots a LUKS1 header has.
const MaxSlots = 8

// Defaults of Runner.
const (
	DefaultBinary       = "qemu-img"
	DefaultIterTime     = 100 * time.Millisecond
	DefaultAddressSpace = 4 << 30
	// DefaultCPUSeconds bounds one qemu-img call's CPU time (an encryption
	// of a large disk takes minutes).
	DefaultCPUSeconds = 6 * 3600
)

// Errors callers tell apart with errors.Is.
var (
	// ErrWrongPassphrase: no key slot opens with the passphrase given.
	ErrWrongPassphrase = errors.New("wrong passphrase: no key slot of the volume opens with it")
	// ErrFormat: the file is not in the format it was declared to be, or is
	// a format this package does not read.
	ErrFormat = errors.New("unexpected disk format")
	// ErrNotLUKS: the file is not a LUKS volume.
	ErrNotLUKS = errors.New("not a LUKS volume")
	// ErrSlot: a key slot number is out of range, taken or empty, or the
	// change would leave no active slot.
	ErrSlot = errors.New("key slot")
	// ErrPath: a path qemu-img could read as something else than a file
	// (qemuimg.ErrPath).
	ErrPath = qemuimg.ErrPath
	// ErrCPUTiming matches (errors.Is) a call whose PBKDF2 timing failed
	// on every run (a busy or virtual CPU): not the input's fault, so
	// worth trying again later.
	ErrCPUTiming = errors.New("qemu could not time PBKDF2 on this CPU")
)

// cpuUsageMsg is qemu's message when its PBKDF2 timing fails.
const cpuUsageMsg = "Unable to get accurate CPU usage"

// wrongPassMsg is qemu's message when no key slot opens.
const wrongPassMsg = "Invalid password, cannot unlock any keyslot"

// Runner runs qemu-img. The zero value works.
type Runner struct {
	// Binary is the qemu-img executable; default "qemu-img".
	Binary string
	// TempDir holds the short-lived secret files and scratch outputs;
	// default os.TempDir().
	TempDir string
	// IterTime is the PBKDF2 time of a new key slot; default 100 ms.
	IterTime time.Duration
	// AddressSpace and CPUSeconds limit each qemu-img process (through
	// prlimit); defaults 4 GiB and 6 h.
	AddressSpace int64
	CPUSeconds   int
}

// qemuImg is the shared runner for r's binary, not niced: qemu's PBKDF2
// calibration measures its thread's CPU time over a short probe, and a
// niced qemu-img on busy CPUs fails it ("Unable to get accurate CPU
// usage") far more often.
func (r *Runner) qemuImg() *qemuimg.Runner {
	return &qemuimg.Runner{Binary: r.Binary, Nice: -1}
}

// limits are r's limits of one qemu-img call, every call alike: an
// encryption reads and writes a whole disk.
func (r *Runner) limits() qemuimg.Limits {
	lim := qemuimg.Limits{AddressSpace: r.AddressSpace, CPUSeconds: r.CPUSeconds}
	if lim.AddressSpace <= 0 {
		lim.AddressSpace = DefaultAddressSpace
	}
	if lim.CPUSeconds <= 0 {
		lim.CPUSeconds = DefaultCPUSeconds
	}
	return lim
}

// NewPassphrase makes a strong passphrase: 32 random bytes in unpadded
// base64url (43 characters), printable so operators can hand it to other
// tools.
func NewPassphrase() ([]byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	out := make([]byte, base64.RawURLEncoding.EncodedLen(len(raw)))
	base64.RawURLEncoding.Encode(out, raw)
	return out, nil
}

func (r *Runner) iterMillis() string {
	d := r.IterTime
	if d <= 0 {
		d = DefaultIterTime
	}
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// tempDir is where secret files and scratch outputs go: TempDir or
// os.TempDir(), made absolute and clean, for qemuimg.CheckPath.
func (r *Runner) tempDir() (string, error) {
	d := r.TempDir
	if d == "" {
		d = os.TempDir()
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	return abs, nil
}

// checkPath refuses what qemu could take for something other than a plain
// local file (qemuimg.CheckPath): json: and protocol prefixes, relative or
// unclean paths, control characters. Commas are escaped where a path goes
// into options.
func checkPath(p string) error { return qemuimg.CheckPath(p) }

// optValue escapes a value for qemu's key=value,… option syntax.
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// secrets writes each passphrase to its own 0600 file in dir and returns
// the --object arguments naming them sec0, sec1, …; cleanup removes the
// files and must run as soon as qemu-img has exited.
func (r *Runner) secrets(passes ...[]byte) (args []string, cleanup func(), err error) {
	var files []string
	cleanup = func() {
		for _, f := range files {
			os.Remove(f)
		}
	}
	dir, err := r.tempDir()
	if err != nil {
		return nil, func() {}, err
	}
	for i, p := range passes {
		if len(p) == 0 {
			cleanup()
			return nil, func() {}, errors.New("empty passphrase")
		}
		f, err := os.CreateTemp(dir, ".luks-secret-*") // 0600
		if err != nil {
			cleanup()
			return nil, func() {}, fmt.Errorf("secret file: %w", err)
		}
		files = append(files, f.Name())
		if err := checkPath(f.Name()); err != nil {
			f.Close()
			cleanup()
			return nil, func() {}, fmt.Errorf("secret file: %w", err)
		}
		_, werr := f.Write(p)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			cleanup()
			return nil, func() {}, fmt.Errorf("secret file: %w", werr)
		}
		args = append(args, "--object", fmt.Sprintf("secret,id=sec%d,file=%s,format=raw", i, optValue(f.Name())))
	}
	return args, cleanup, nil
}

// imageOpts opens path as a LUKS volume unlocked by secret sec<i>.
func imageOpts(path string, secret int) string {
	return fmt.Sprintf("driver=luks,key-secret=sec%d,file.driver=file,file.filename=%s", secret, optValue(path))
}

// cpuUsageAttempts bounds the runs of a call whose PBKDF2 timing failed.
// One retry was not always enough here: on 2 busy virtual CPUs two runs in
// a row failed the same way (the thread's CPU time did not move during
// qemu's 32768-iteration probe).
const cpuUsageAttempts = 4

// run runs qemu-img, again (after a short pause) when its PBKDF2 timing
// failed; progress, when not nil, receives stdout as it comes (for -p).
// Nothing is written before that timing, so a rerun starts clean.
func (r *Runner) run(ctx context.Context, progress io.Writer, args ...string) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		out, err := r.runOnce(ctx, progress, args)
		if err == nil || !strings.Contains(err.Error(), cpuUsageMsg) {
			return out, err
		}
		if attempt == cpuUsageAttempts {
			return out, fmt.Errorf("%w (%d runs): %w", ErrCPUTiming, attempt, err)
		}
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

func (r *Runner) runOnce(ctx context.Context, progress io.Writer, args []string) ([]byte, error) {
	var out []byte
	var err error
	if progress != nil {
		err = r.qemuImg().Stream(ctx, r.limits(), progress, args...)
	} else {
		out, err = r.qemuImg().Run(ctx, r.limits(), args...)
	}
	if err != nil && ctx.Err() == nil && strings.Contains(err.Error(), wrongPassMsg) {
		return out, fmt.Errorf("qemu-img %s: %w", args[0], ErrWrongPassphrase)
	}
	return out, err
}

// Info is what a LUKS header tells without a passphrase.
type Info struct {
	// VirtualSize is the size of the decrypted payload, in bytes.
	VirtualSize int64 `json:"virtual_size"`
	// Slots tells for each of the 8 key slots whether it is active.
	Slots [MaxSlots]bool `json:"slots"`
	// UUID of the LUKS header.
	UUID   string `json:"uuid"`
	Cipher string `json:"cipher"`
}

// Active lists the active key slots, in order.
func (i Info) Active() []int {
	var out []int
	for n, a := range i.Slots {
		if a {
			out = append(out, n)
		}
	}
	return out
}

// FreeSlot is the lowest inactive slot, or -1 when all are taken.
func (i Info) FreeSlot() int {
	for n, a := range i.Slots {
		if !a {
			return n
		}
	}
	return -1
}

// Info reads a LUKS header (`qemu-img info -f luks`; no passphrase needed).
func (r *Runner) Info(ctx context.Context, path string) (Info, error) {
	if err := checkPath(path); err != nil {
		return Info{}, err
	}
	if err := isLUKS(path); err != nil {
		return Info{}, err
	}
	out, err := r.run(ctx, nil, "info", "--output", "json", "-f", "luks", path)
	if err != nil {
		return Info{}, err
	}
	var raw struct {
		VirtualSize    int64 `json:"virtual-size"`
		FormatSpecific struct {
			Type string `json:"type"`
			Data struct {
				UUID       string `json:"uuid"`
				CipherAlg  string `json:"cipher-alg"`
				CipherMode string `json:"cipher-mode"`
				Slots      []struct {
					Active bool `json:"active"`
				} `json:"slots"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return Info{}, fmt.Errorf("qemu-img info: %w", err)
	}
	d := raw.FormatSpecific.Data
	if raw.FormatSpecific.Type != "luks" || len(d.Slots) != MaxSlots {
		return Info{}, fmt.Errorf("qemu-img info: %w: format-specific type %q with %d slots", ErrNotLUKS, raw.FormatSpecific.Type, len(d.Slots))
	}
	info := Info{VirtualSize: raw.VirtualSize, UUID: d.UUID, Cipher: d.CipherAlg + "-" + d.CipherMode}
	for n, s := range d.Slots {
		info.Slots[n] = s.Active
	}
	return info, nil
}
