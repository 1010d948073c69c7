package qemuimg

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"sync"

	"github.com/slipway/slipway/pkg/inspect"
)

// ConvertOptions tune Convert and Measure.
type ConvertOptions struct {
	Compress        bool   // compress the output (qcow2 only)
	CompressionType string // "zstd" (default when Compress) or "zlib"
	// OutOfOrder allows out-of-order writes (-W), faster on most storage.
	// Nil means true.
	OutOfOrder *bool
	// Progress, when set, is called with bytes done and the virtual size as
	// qemu-img reports progress (about every 1%).
	Progress func(done, total int64)
	// Verified is what an earlier Info call on the same source reported.
	// Convert then skips its own Info call (one qemu-img run fewer); nil
	// means Convert checks the source itself.
	Verified *Info
}

func (o ConvertOptions) outOfOrder() bool { return o.OutOfOrder == nil || *o.OutOfOrder }

// outputFormats are the formats Convert writes. LUKS output belongs to the
// crypto service; ISO output makes no sense.
var outputFormats = map[inspect.Format]bool{
	inspect.Raw: true, inspect.QCOW2: true, inspect.VMDK: true, inspect.VDI: true, inspect.VHD: true, inspect.VHDX: true,
}

// createOptions returns the -o option string for writing format to; no user
// string ever goes into it.
func (o ConvertOptions) createOptions(to inspect.Format) (string, error) {
	if o.Compress && to != inspect.QCOW2 {
		return "", fmt.Errorf("qemu-img: compression is only supported for qcow2 output, not %s", to)
	}
	if !o.Compress && o.CompressionType != "" {
		return "", fmt.Errorf("qemu-img: compression type %q given without compression", o.CompressionType)
	}
	switch to {
	case inspect.QCOW2:
		if !o.Compress {
			return "", nil
		}
		switch o.CompressionType {
		case "", "zstd":
			return "compression_type=zstd", nil
		case "zlib":
			return "compression_type=zlib", nil
		}
		return "", fmt.Errorf("qemu-img: unknown compression type %q (zstd or zlib)", o.CompressionType)
	case inspect.VHD:
		// Keep the exact virtual size instead of rounding it to a CHS geometry.
		return "force_size=on", nil
	}
	return "", nil
}

// Convert converts src (format from) into dst (format to). Unless
// opts.Verified carries an earlier result, it first runs Info on src, which
// double-checks the format and the absence of backing and data files and
// gives the size progress is reported against.
func (r *Runner) Convert(ctx context.Context, src string, from inspect.Format, dst string, to inspect.Format, opts ConvertOptions) error {
	if err := CheckPath(dst); err != nil {
		return err
	}
	if !outputFormats[to] {
		return fmt.Errorf("qemu-img: output format %q is not supported (raw, qcow2, vmdk, vdi, vpc, vhdx)", to)
	}
	o, err := opts.createOptions(to)
	if err != nil {
		return err
	}
	info := opts.Verified
	if info == nil {
		checked, err := r.Info(ctx, src, from)
		if err != nil {
			return err
		}
		info = &checked
	}
	args := []string{"convert", "-f", from.QemuFormat(), "-O", string(to)}
	if o != "" {
		args = append(args, "-o", o)
	}
	if opts.Compress {
		args = append(args, "-c")
	}
	if opts.outOfOrder() {
		args = append(args, "-W")
	}
	if opts.Progress != nil {
		args = append(args, "-p")
	}
	args = append(args, src, dst)
	return r.runProgress(ctx, args, info.VirtualSize, opts.Progress)
}

// runProgress runs a heavy qemu-img call, feeding its `-p` output to
// progress.
func (r *Runner) runProgress(ctx context.Context, args []string, total int64, progress func(done, total int64)) error {
	stderr := &tailBuffer{max: 8 << 10}
	cmd := r.Command(ctx, r.Heavy(), args...)
	cmd.Stderr = stderr
	var wg sync.WaitGroup
	if progress != nil {
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			parseProgress(out, total, progress)
		}()
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu-img %s: %w", args[0], err)
	}
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		return runError(ctx, args, err, stderr.String(), r.Heavy())
	}
	return nil
}

var progressRE = regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`)

// parseProgress reads qemu-img's progress lines, "    (12.34/100%)" chunks
// separated by '\r', and reports each new value.
func parseProgress(r io.Reader, total int64, progress func(done, total int64)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	sc.Split(splitCR)
	last := int64(-1)
	for sc.Scan() {
		m := progressRE.FindSubmatch(sc.Bytes())
		if m == nil {
			continue
		}
		pct, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			continue
		}
		done := int64(pct / 100 * float64(total))
		if done != last {
			last = done
			progress(done, total)
		}
	}
	_, _ = io.Copy(io.Discard, r) // keep draining so qemu-img never blocks
}

// splitCR splits on '\r' or '\n'.
func splitCR(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// measurable are the output formats `qemu-img measure` supports.
var measurable = map[inspect.Format]bool{inspect.Raw: true, inspect.QCOW2: true}

// Measure returns how many bytes converting path (format from) to format to
// with opts needs, via `qemu-img measure --output=json`. qemu-img can only
// measure raw and qcow2 output; for vmdk, vdi, vpc and vhdx it returns the
// qcow2 figure plus 1% and 2 MiB of headroom for their different metadata.
func (r *Runner) Measure(ctx context.Context, path string, from, to inspect.Format, opts ConvertOptions) (int64, error) {
	if err := CheckPath(path); err != nil {
		return 0, err
	}
	if !outputFormats[to] {
		return 0, fmt.Errorf("qemu-img: output format %q is not supported", to)
	}
	if _, err := qemuFormat(from); err != nil {
		return 0, err
	}
	target := to
	if !measurable[to] {
		target, opts = inspect.QCOW2, ConvertOptions{}
	}
	o, err := opts.createOptions(target)
	if err != nil {
		return 0, err
	}
	args := []string{"measure", "--output=json", "-f", from.QemuFormat(), "-O", string(target)}
	if o != "" {
		args = append(args, "-o", o)
	}
	out, err := r.Run(ctx, r.Light(), append(args, path)...)
	if err != nil {
		return 0, err
	}
	var j struct {
		Required int64 `json:"required"`
	}
	if err := json.Unmarshal(out, &j); err != nil {
		return 0, fmt.Errorf("qemu-img measure: parse output: %w", err)
	}
	if target != to {
		j.Required += j.Required/100 + 2<<20
	}
	return j.Required, nil
}

// Create makes an empty image of the given virtual size.
func (r *Runner) Create(ctx context.Context, path string, f inspect.Format, size int64) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	if !outputFormats[f] {
		return fmt.Errorf("qemu-img: cannot create format %q", f)
	}
	if size <= 0 {
		return fmt.Errorf("qemu-img create: size %d must be positive", size)
	}
	args := []string{"create", "-q", "-f", string(f)}
	if f == inspect.VHD {
		args = append(args, "-o", "force_size=on")
	}
	_, err := r.Run(ctx, r.Heavy(), append(args, path, strconv.FormatInt(size, 10))...)
	return err
}
