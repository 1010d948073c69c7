package qemuimg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/inspect"
)

// ErrUnsafe marks an image qemu-img reports as referencing another file or
// being of another format than asked: inspect should have caught it, so this
// is the second line of defence and, like inspect's refusals, terminal.
var ErrUnsafe = errors.New("qemu-img reports an unsafe image")

// Info is what `qemu-img info` reports about an image.
type Info struct {
	Format          string // qemu's format name
	VirtualSize     int64
	ActualSize      int64  // bytes allocated on disk
	ClusterSize     int64  // 0 when the format has none
	DirtyFlag       bool   // qcow2 left dirty by an unclean shutdown
	CompressionType string // qcow2 only: "zlib" or "zstd"
}

type infoJSON struct {
	VirtualSize     int64           `json:"virtual-size"`
	ActualSize      int64           `json:"actual-size"`
	Format          string          `json:"format"`
	ClusterSize     int64           `json:"cluster-size"`
	DirtyFlag       bool            `json:"dirty-flag"`
	BackingFilename string          `json:"backing-filename"`
	FullBacking     string          `json:"full-backing-filename"`
	BackingImage    json.RawMessage `json:"backing-image"`
	FormatSpecific  struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	} `json:"format-specific"`
}

// Info runs `qemu-img info --output=json -f F path` and cross-checks the
// result: the format must be f and there must be no backing or data file.
func (r *Runner) Info(ctx context.Context, path string, f inspect.Format) (Info, error) {
	if err := CheckPath(path); err != nil {
		return Info{}, err
	}
	qf, err := qemuFormat(f)
	if err != nil {
		return Info{}, err
	}
	out, err := r.Run(ctx, r.Light(), "info", "--output=json", "-f", qf, path)
	if err != nil {
		return Info{}, err
	}
	var j infoJSON
	if err := json.Unmarshal(out, &j); err != nil {
		return Info{}, fmt.Errorf("qemu-img info: parse output: %w", err)
	}
	if j.Format != qf {
		return Info{}, fmt.Errorf("%w: asked for %s, qemu-img opened %s", ErrUnsafe, qf, j.Format)
	}
	if j.BackingFilename != "" || j.FullBacking != "" || len(j.BackingImage) > 0 {
		return Info{}, fmt.Errorf("%w: backing file %q; backing files are not allowed", ErrUnsafe, j.BackingFilename+j.FullBacking)
	}
	if df, ok := j.FormatSpecific.Data["data-file"]; ok {
		return Info{}, fmt.Errorf("%w: external data file %v; external data files are not allowed", ErrUnsafe, df)
	}
	ct, _ := j.FormatSpecific.Data["compression-type"].(string)
	return Info{Format: j.Format, VirtualSize: j.VirtualSize, ActualSize: j.ActualSize,
		ClusterSize: j.ClusterSize, DirtyFlag: j.DirtyFlag, CompressionType: ct}, nil
}

// checkable lists the formats `qemu-img check` supports among ours.
var checkable = map[inspect.Format]bool{inspect.QCOW2: true, inspect.VDI: true, inspect.VHDX: true, inspect.VMDK: true}

// ErrCorrupt marks an image `qemu-img check` found corrupt.
var ErrCorrupt = errors.New("image is corrupt")

// Check runs `qemu-img check -f F path` for formats that support it (qcow2,
// vdi, vhdx, vmdk) and returns nil at once for the others. Leaked clusters
// (exit status 3) are harmless and pass; corruption is ErrCorrupt.
func (r *Runner) Check(ctx context.Context, path string, f inspect.Format) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	if !checkable[f] {
		return nil
	}
	_, err := r.Run(ctx, r.Light(), "check", "--output=json", "-f", string(f), path)
	switch code := exitCode(err); code {
	case 0, 3:
		return nil
	case 2:
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	default:
		return err
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// qemuFormat maps an input format to qemu's -f name and refuses the ones
// this package never opens (LUKS needs a secret, QED is refused).
func qemuFormat(f inspect.Format) (string, error) {
	switch f {
	case inspect.Raw, inspect.QCOW2, inspect.VMDK, inspect.VDI, inspect.VHD, inspect.VHDX, inspect.ISO:
		return f.QemuFormat(), nil
	}
	return "", fmt.Errorf("qemu-img: format %q is not supported here", f)
}
