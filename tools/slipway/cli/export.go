package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// exportFlags are the options of `slipway image export`.
type exportFlags struct {
	ref      string
	insecure bool
	layout   string
	tmpDir   string
}

// addExportCmd adds `export` to root's `image` command; it lives here so
// the image command's own file need not change.
func addExportCmd(root *cobra.Command, g *globals) { addImageCmd(root, newExportCmd(g)) }

// addImageCmd adds sub to root's `image` command.
func addImageCmd(root, sub *cobra.Command) {
	for _, c := range root.Commands() {
		if c.Name() == "image" {
			c.AddCommand(sub)
			return
		}
	}
}

func newExportCmd(g *globals) *cobra.Command {
	var f exportFlags
	cmd := &cobra.Command{
		Use:   "export ID|NAME --oci REFERENCE",
		Short: "Push an image to a registry as a disk carried in an OCI image (KubeVirt containerDisk, RancherVM)",
		Long: `Push a READY disk image to an OCI registry as a FROM-scratch image with one
layer holding the disk as a zlib-compressed qcow2: /disk/disk.qcow2, owned by
107:107, for KubeVirt's containerDisk (--layout kubevirt, the default), or
/base_image/disk.qcow2 for RancherVM (--layout rancher). zlib, not zstd,
because the QEMU that KubeVirt or RancherVM run may not read zstd.

The disk is downloaded from S3 to a temporary directory (--tmp-dir), converted
there with qemu-img unless it already is a compressed qcow2, and pushed; the
temporary files are removed whatever happens. Prints "pushed REF@DIGEST".
Slipway imports the result back with --path docker://REF.`,
		Example: `  slipway image export 7 --oci registry.local:5000/disks/alpine:3.20
  slipway image export alpine --oci 127.0.0.1:5000/vm/alpine:1 --layout rancher --insecure`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			layout, err := parseLayout(f.layout)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if err := checkExportRef(f.ref, f.insecure); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			return g.export(cmd.Context(), args[0], f, layout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.ref, "oci", "", "registry reference to push to: registry/repository[:tag]")
	fl.BoolVar(&f.insecure, "insecure", false, "allow a plain-http registry")
	fl.StringVar(&f.layout, "layout", "kubevirt", "kubevirt (/disk/, a containerDisk) or rancher (/base_image/, RancherVM)")
	fl.StringVar(&f.tmpDir, "tmp-dir", "", "directory for the downloaded and converted disk (default: the system's temporary directory)")
	_ = cmd.MarkFlagRequired("oci")
	return cmd
}

// parseLayout maps --layout to pkg/oci's layouts.
func parseLayout(s string) (oci.Layout, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "kubevirt", "containerdisk":
		return oci.KubeVirtLayout, nil
	case "rancher", "ranchervm":
		return oci.RancherVMLayout, nil
	}
	return oci.Layout{}, fmt.Errorf("--layout %q: want kubevirt or rancher", s)
}

// checkExportRef refuses a reference that cannot be pushed to before
// anything is downloaded: the push needs a tag, not a digest.
func checkExportRef(ref string, insecure bool) error {
	if strings.TrimSpace(ref) == "" {
		return errors.New("--oci: give the reference to push to, e.g. registry.local:5000/disks/app:1")
	}
	if strings.Contains(ref, "@") {
		return fmt.Errorf("--oci %q: a digest cannot be pushed to; give a tag (registry/repository:tag)", ref)
	}
	opts := []name.Option{name.WeakValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	if _, err := name.NewTag(ref, opts...); err != nil {
		return fmt.Errorf("--oci %q: want registry/repository[:tag]: %w", ref, err)
	}
	return nil
}

// export looks the image up, fetches its blob, makes it a zlib-compressed
// qcow2 and pushes it.
func (g *globals) export(ctx context.Context, ref string, f exportFlags, layout oci.Layout) error {
	img, err := g.lookup(ctx, ref)
	if err != nil {
		return err
	}
	id := img.ID
	qfmt, err := exportable(img)
	if err != nil {
		return err
	}
	// Temporary keys that read this one blob, issued by the catalog if
	// the user may use the image: the CLI holds no service key.
	var store *blob.Store
	var grant schemas.S3TemporaryCredentials
	if err := g.withBus(ctx, func(b *bus.Bus) (err error) {
		store, grant, err = g.blobStore(ctx, b, int64(id))
		return err
	}); err != nil {
		return err
	}
	bucket, key := grant.Bucket, grant.Key

	dir, err := os.MkdirTemp(f.tmpDir, "slipway-export-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	src := filepath.Join(dir, "source."+qfmt)
	if err := g.fetch(ctx, store, bucket, key, src, img); err != nil {
		return fmt.Errorf("image %d: %w", id, err)
	}
	// The layer's file is named disk.qcow2 whatever the image is called:
	// KubeVirt and RancherVM pick the one file in their directory.
	disk := filepath.Join(dir, "disk.qcow2")
	ready, why, err := compressedQcow2(ctx, src, qfmt)
	if err != nil {
		return fmt.Errorf("image %d: %w", id, err)
	}
	if ready {
		fmt.Fprintf(g.io.err, "image %d is already a zlib-compressed qcow2: pushed as it is\n", id)
		if err := os.Rename(src, disk); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.io.err, "converting %s to a zlib-compressed qcow2 (%s)\n", qfmt, why)
		if err := g.compress(ctx, src, qfmt, disk, img.Size); err != nil {
			return fmt.Errorf("image %d: %w", id, err)
		}
		_ = os.Remove(src) // free the space before the push
	}
	fi, err := os.Stat(disk)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.io.err, "pushing %s (%s) to %s as /%s/%s\n", filepath.Base(disk), render.HumanSize(fi.Size()), f.ref, layout.Dir, filepath.Base(disk))
	start := time.Now()
	// The CLI pushes for the person who runs it, to a registry they name:
	// no server-side request to guard, so not the services' netguard.
	digest, err := oci.PushDiskLayout(ctx, f.ref, disk, layout, oci.Options{Insecure: f.insecure, Transport: remote.DefaultTransport})
	if err != nil {
		return fmt.Errorf("image %d: push to %s: %w", id, f.ref, err)
	}
	fmt.Fprintf(g.io.err, "pushed in %s\n", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(g.io.out, "pushed %s@%s\n", f.ref, digest)
	return nil
}

// lookup asks the catalog for the image named by an ID or a name. The
// connection closes before the long work starts.
func (g *globals) lookup(ctx context.Context, ref string) (img render.Image, err error) {
	err = withFound(ctx, g, findImage, ref, func(_ *bus.Bus, found render.Image) error {
		img = found
		return nil
	})
	return img, err
}

// exportable checks that img is a READY disk and returns the format to
// give qemu-img with -f.
func exportable(img render.Image) (string, error) {
	if isFileImage(img) {
		return "", fmt.Errorf("image %d (%s) is a %s file, not a disk: only OS, CDROM and DATABLOCK images can be exported", img.ID, img.Name, img.Type)
	}
	if img.State != string(schemas.ImageStateReady) {
		msg := fmt.Sprintf("image %d (%s) is %s, not READY: only a READY image can be exported", img.ID, img.Name, img.State)
		if img.Error != "" {
			msg += " (its error: " + img.Error + ")"
		}
		return "", errors.New(msg)
	}
	if img.Source == "" {
		return "", fmt.Errorf("image %d (%s) has no data (SOURCE is empty)", img.ID, img.Name)
	}
	return qemuSourceFormat(img.Format)
}

// qemuSourceFormat maps a stored format to qemu-img's name for it. Formats
// qemu-img would need a secret to read (luks) are refused, and so is
// anything unknown: -f is always explicit, never probed.
func qemuSourceFormat(format string) (string, error) {
	switch f := schemas.DiskFormat(strings.ToLower(format)); f {
	case schemas.DiskFormatRaw, schemas.DiskFormatQcow2, schemas.DiskFormatVMDK,
		schemas.DiskFormatVDI, schemas.DiskFormatVPC, schemas.DiskFormatVHDX:
		return string(f), nil
	case schemas.DiskFormatISO:
		return "raw", nil // an ISO is read as the bytes it is
	case schemas.DiskFormatLUKS:
		return "", errors.New("format luks: qemu-img needs the image's secret to read it; export is refused")
	case "":
		return "", errors.New("the image has no recorded format")
	default:
		return "", fmt.Errorf("format %q: not one Slipway can export", format)
	}
}

// fetch streams the object to path, checking its size and, when the
// catalog recorded one, its SHA-256 (streamBlob).
func (g *globals) fetch(ctx context.Context, store *blob.Store, bucket, key, path string, img render.Image) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := g.streamBlob(ctx, store, bucket, key, out, img); err != nil {
		return err
	}
	return out.Close()
}

// compressedQcow2 tells whether path may be pushed without conversion: a
// qcow2 whose compression type is zlib and that holds compressed clusters.
// A qcow2 whose data did not compress has none and is converted again,
// which costs time but gives the same result. why says what is missing.
func compressedQcow2(ctx context.Context, path, qfmt string) (ok bool, why string, err error) {
	if qfmt != "qcow2" {
		return false, "stored as " + qfmt, nil
	}
	var info struct {
		BackingFilename string `json:"backing-filename"`
		FormatSpecific  struct {
			Data struct {
				CompressionType string `json:"compression-type"`
				DataFile        string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := qemuJSON(ctx, &info, "info", "--output=json", "-f", "qcow2", path); err != nil {
		return false, "", err
	}
	if info.BackingFilename != "" || info.FormatSpecific.Data.DataFile != "" {
		return false, "", fmt.Errorf("the stored qcow2 refers to another file (%q%q); export is refused",
			info.BackingFilename, info.FormatSpecific.Data.DataFile)
	}
	if ct := info.FormatSpecific.Data.CompressionType; ct != "" && ct != "zlib" {
		return false, "its qcow2 compression is " + ct, nil
	}
	var check struct {
		CompressedClusters int64 `json:"compressed-clusters"`
	}
	if err := qemuJSON(ctx, &check, "check", "--output=json", "-f", "qcow2", path); err != nil {
		return false, "", err
	}
	if check.CompressedClusters == 0 {
		return false, "its qcow2 has no compressed clusters", nil
	}
	return true, "", nil
}

// qemuImg runs qemu-img confined (pkg/qemuimg): the blob is someone's
// image, and the CLI's environment holds S3 keys.
var qemuImg = &qemuimg.Runner{}

// qemuJSON runs a qemu-img subcommand that prints JSON and decodes it.
func qemuJSON(ctx context.Context, v any, args ...string) error {
	out, err := qemuImg.Run(ctx, qemuImg.Light(), args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("qemu-img %s: reading its JSON: %w", args[0], err)
	}
	return nil
}

// compress converts src (format from) into a zlib-compressed qcow2 at dst,
// showing qemu-img's own progress as a share of size (the virtual size).
func (g *globals) compress(ctx context.Context, src, from, dst string, size int64) error {
	args := []string{"convert", "-p", "-f", from, "-O", "qcow2", "-c", "-o", "compression_type=zlib", src, dst}
	pr, pw := io.Pipe()
	bar := newProgressView(g.io.err, "")
	read := make(chan struct{})
	go func() {
		defer close(read)
		readPercent(pr, func(pct float64) {
			bar.update("convert", int64(pct/100*float64(size)), size, time.Now())
		})
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := qemuImg.Stream(ctx, qemuImg.Heavy(), pw, args...)
	pw.Close()
	<-read
	bar.done()
	if err != nil {
		return err
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.io.err, "converted to qcow2 (%s)\n", render.HumanSize(fi.Size()))
	return nil
}

// readPercent reads qemu-img -p output, "    (12.50/100%)" records ended by
// carriage returns, and reports each percentage until EOF.
func readPercent(r io.Reader, report func(pct float64)) {
	sc := bufio.NewScanner(r)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		s = strings.TrimPrefix(s, "(")
		num, _, ok := strings.Cut(s, "/100%")
		if !ok {
			continue
		}
		if pct, err := strconv.ParseFloat(num, 64); err == nil {
			report(pct)
		}
	}
	_, _ = io.Copy(io.Discard, r) // never block qemu-img on a full pipe
}
