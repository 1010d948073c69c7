package cli

// `slipway image download`: an image's data in any disk format, streamed.
//
// Where the conversion runs: here, in the CLI, with the same confined
// qemu-img `image export` uses, on a download in a temporary directory.
// qemu-img reads qcow2, VMDK, VHDX… by seeking, so it cannot convert a
// stream; the converter could write a temporary S3 object instead, but that
// would need a new converter command, its own permissions and a second copy
// of the disk in S3 that a crashed CLI leaves behind. Here memory stays flat
// (io.Copy buffers) and the disk use is bounded: the stored blob plus the
// converted output, both removed whatever happens. With -o FILE qemu-img
// writes next to FILE (sparse, once) and the result is renamed over FILE
// when complete.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/inspect"
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// downloadFlags are the options of `slipway image download`.
type downloadFlags struct {
	format string
	output string
	tmpDir string
}

// addDownloadCmd adds `download` to root's `image` command.
func addDownloadCmd(root *cobra.Command, g *globals) { addImageCmd(root, newDownloadCmd(g)) }

func newDownloadCmd(g *globals) *cobra.Command {
	var f downloadFlags
	cmd := &cobra.Command{
		Use:   "download ID|NAME [--format raw|qcow2|vmdk|vdi|vpc|vhdx] [-o FILE]",
		Short: "Write an image's data to a file or standard output, in its stored format or converted",
		Long: `Download the data of an image you may use, to -o FILE or to standard output.

Without --format, or with the format the image is stored in, the stored blob
is streamed as it is (read with temporary S3 keys the catalog issues for that
one object) and its SHA-256 checked against the catalog's record at the end.
KERNEL, RAMDISK and CONTEXT images are files and always come byte for byte.

With another --format (raw, qcow2, vmdk, vdi, vpc or vhd, vhdx) the blob is
downloaded to a temporary directory (--tmp-dir), converted there by qemu-img
and the result written out; the temporary files are removed whatever
happens. The disk needed is the stored size plus the output's.

A LUKS image downloads as its ciphertext (--format luks or none): the CLI
never holds the volume's secret, so it cannot convert it to another format;
boot it or decrypt it with cryptsetup and the secret.`,
		Example: `  slipway image download 7 -o disk.qcow2
  slipway image download alpine --format raw > alpine.raw
  slipway image download 7 --format vmdk -o disk.vmdk`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			want, err := parseDownloadFormat(f.format)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			return g.download(cmd.Context(), args[0], want, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", "", "output format: raw|qcow2|vmdk|vdi|vpc (vhd)|vhdx|iso|luks (default: as stored)")
	fl.StringVarP(&f.output, "output", "o", "", "file to write (default: standard output)")
	fl.StringVar(&f.tmpDir, "tmp-dir", "", "directory for the download a conversion reads (default: the system's temporary directory)")
	return cmd
}

// parseDownloadFormat maps --format to a stored format name ("" keeps the
// stored one).
func parseDownloadFormat(s string) (schemas.DiskFormat, error) {
	f := strings.ToLower(strings.TrimSpace(s))
	switch f {
	case "":
		return "", nil
	case "vhd":
		return schemas.DiskFormatVPC, nil
	}
	for _, ok := range []schemas.DiskFormat{schemas.DiskFormatRaw, schemas.DiskFormatQcow2, schemas.DiskFormatVMDK,
		schemas.DiskFormatVDI, schemas.DiskFormatVPC, schemas.DiskFormatVHDX, schemas.DiskFormatISO, schemas.DiskFormatLUKS} {
		if f == string(ok) {
			return ok, nil
		}
	}
	return "", fmt.Errorf("--format %q: want raw, qcow2, vmdk, vdi, vpc (vhd), vhdx, iso or luks", s)
}

// downloadPlan is what a download does: stream the blob, or convert it
// from one qemu-img format to another.
type downloadPlan struct {
	stream   bool
	from, to inspect.Format
}

// planDownload checks img can be downloaded as want.
func planDownload(img render.Image, want schemas.DiskFormat) (downloadPlan, error) {
	switch img.State {
	case string(schemas.ImageStateReady), string(schemas.ImageStateUsed):
	default:
		return downloadPlan{}, fmt.Errorf("image %d (%s) is %s: only a READY or USED image has data to download", img.ID, img.Name, img.State)
	}
	if img.Source == "" {
		return downloadPlan{}, fmt.Errorf("image %d (%s) has no data (SOURCE is empty)", img.ID, img.Name)
	}
	stored := schemas.DiskFormat(strings.ToLower(img.Format))
	if isFileImage(img) {
		if want != "" {
			return downloadPlan{}, fmt.Errorf("image %d (%s) is a %s file, not a disk: it downloads byte for byte, without --format", img.ID, img.Name, img.Type)
		}
		return downloadPlan{stream: true}, nil
	}
	if want == "" || want == stored || (stored == schemas.DiskFormatISO && want == schemas.DiskFormatRaw) {
		return downloadPlan{stream: true}, nil
	}
	switch {
	case stored == schemas.DiskFormatLUKS:
		return downloadPlan{}, fmt.Errorf("image %d (%s) is LUKS-encrypted: it downloads only as its ciphertext (--format luks); converting it needs its secret, which the CLI never holds", img.ID, img.Name)
	case want == schemas.DiskFormatLUKS || want == schemas.DiskFormatISO:
		return downloadPlan{}, fmt.Errorf("image %d (%s) is stored as %s: it cannot be made %s by a download", img.ID, img.Name, stored, want)
	}
	from, err := qemuSourceFormat(string(stored))
	if err != nil {
		return downloadPlan{}, fmt.Errorf("image %d (%s): %w", img.ID, img.Name, err)
	}
	return downloadPlan{from: inspect.Format(from), to: inspect.Format(want)}, nil
}

// isFileImage tells a KERNEL, RAMDISK or CONTEXT image: a file, not a disk.
func isFileImage(img render.Image) bool {
	switch schemas.ImageType(img.Type) {
	case schemas.ImageTypeKernel, schemas.ImageTypeRamdisk, schemas.ImageTypeContext:
		return true
	}
	return false
}

// download looks the image up, gets keys that read its blob and streams or
// converts it to the output.
func (g *globals) download(ctx context.Context, ref string, want schemas.DiskFormat, f downloadFlags) error {
	img, err := g.lookup(ctx, ref)
	if err != nil {
		return err
	}
	plan, err := planDownload(img, want)
	if err != nil {
		return err
	}
	var store *blob.Store
	var grant schemas.S3TemporaryCredentials
	if err := g.withBus(ctx, func(b *bus.Bus) (err error) {
		store, grant, err = g.blobStore(ctx, b, int64(img.ID))
		return err
	}); err != nil {
		return err
	}
	out, err := openOutput(f.output, g.io.out)
	if err != nil {
		return err
	}
	if plan.stream {
		err = g.streamBlob(ctx, store, grant.Bucket, grant.Key, out.w, img)
	} else {
		err = g.convertDownload(ctx, store, grant, img, plan, f.tmpDir, out)
	}
	return out.finish(err)
}

// output is where a download goes: a temporary file beside -o's file,
// renamed over it when complete, or standard output.
type output struct {
	w    io.Writer
	file *os.File
	path string
}

func openOutput(path string, stdout io.Writer) (*output, error) {
	if path == "" || path == "-" {
		return &output{w: stdout}, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".part-*")
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", path, err)
	}
	return &output{w: f, file: f, path: abs}, nil
}

// finish closes the output and, when err is nil, renames it into place;
// otherwise the partial file is removed.
func (o *output) finish(err error) error {
	if o.file == nil {
		return err
	}
	if cerr := o.file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(o.file.Name(), o.path)
	}
	if err != nil {
		_ = os.Remove(o.file.Name())
	}
	return err
}

// streamBlob copies the object to w, checking its size and, when the
// catalog recorded one, its SHA-256. On standard output a mismatch is found
// only after the bytes went out: the exit status says so.
func (g *globals) streamBlob(ctx context.Context, store *blob.Store, bucket, key string, w io.Writer, img render.Image) error {
	url := blob.URL(bucket, key)
	rc, size, err := store.Get(ctx, bucket, key)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer rc.Close()
	bar := newProgressView(g.io.err, "")
	defer bar.done()
	h := sha256.New()
	pw := &jobs.Writer{W: io.MultiWriter(w, h), Total: size, Report: func(done, total int64) {
		bar.update("download", done, total, time.Now())
	}}
	n, err := io.Copy(pw, rc)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	if n != size {
		return fmt.Errorf("download %s: got %d bytes, the object has %d", url, n, size)
	}
	if want := strings.TrimPrefix(img.SHA256, "sha256:"); want != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("download %s: sha256 %s, the catalog recorded %s", url, got, want)
		}
	}
	bar.done()
	fmt.Fprintf(g.io.err, "downloaded %s (image %d, %s, %s)\n", url, img.ID, img.Format, render.HumanSize(n))
	return nil
}

// convertDownload fetches the blob to a temporary directory and converts
// it: straight into -o's temporary file when qemu-img may be given its
// path (a raw output then stays sparse and is written once), else beside
// the download, then copied to the output.
func (g *globals) convertDownload(ctx context.Context, store *blob.Store, grant schemas.S3TemporaryCredentials, img render.Image, plan downloadPlan, tmpDir string, out *output) error {
	dir, err := os.MkdirTemp(tmpDir, "slipway-download-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	src := filepath.Join(dir, "source")
	if err := g.fetch(ctx, store, grant.Bucket, grant.Key, src, img); err != nil {
		return fmt.Errorf("image %d: %w", img.ID, err)
	}
	dst := filepath.Join(dir, "out")
	direct := out.file != nil && qemuimg.CheckPath(out.file.Name()) == nil
	if direct {
		dst = out.file.Name()
	}
	bar := newProgressView(g.io.err, "")
	err = qemuImg.Convert(ctx, src, plan.from, dst, plan.to, qemuimg.ConvertOptions{
		Progress: func(done, total int64) { bar.update("convert", done, total, time.Now()) },
	})
	bar.done()
	if err != nil {
		return fmt.Errorf("image %d: convert %s to %s: %w", img.ID, plan.from, plan.to, err)
	}
	_ = os.Remove(src) // free the space before the copy
	converted, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer converted.Close()
	if direct {
		fi, err := converted.Stat()
		if err != nil {
			return err
		}
		fmt.Fprintf(g.io.err, "converted image %d from %s to %s (%s)\n", img.ID, plan.from, plan.to, render.HumanSize(fi.Size()))
		return nil
	}
	n, err := io.Copy(out.w, converted)
	if err != nil {
		return fmt.Errorf("image %d: write the %s output: %w", img.ID, plan.to, err)
	}
	fmt.Fprintf(g.io.err, "converted image %d from %s to %s (%s)\n", img.ID, plan.from, plan.to, render.HumanSize(n))
	return nil
}
