package fsimage

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/builder/ext4"
	"github.com/slipway/slipway/services/builder/tree"
)

// imageBuilder is one way the package makes an image: Build with the
// tools for a filesystem, or LayoutExt4 for ext4 without them. The tests
// hold every builder to the same tree.
type imageBuilder struct {
	name  string // "ext4", "xfs", "ext4-native"…
	fs    string // the filesystem made, for the readers and checks
	build func(ctx context.Context, t testing.TB, root string, tr *tree.Tree, out string, opts Options) (Result, error)
}

// builders returns the builders of the filesystems fss: Build for each,
// and the native layout where ext4 is listed.
func builders(fss ...string) []imageBuilder {
	var out []imageBuilder
	for _, fs := range fss {
		out = append(out, imageBuilder{name: fs, fs: fs, build: buildWithTools})
		if fs == "ext4" {
			out = append(out, imageBuilder{name: "ext4-native", fs: "ext4", build: buildNative})
		}
	}
	return out
}

func allBuilders() []imageBuilder { return builders(Filesystems...) }

func buildWithTools(ctx context.Context, _ testing.TB, root string, tr *tree.Tree, out string, opts Options) (Result, error) {
	return Build(ctx, root, tr, out, opts)
}

// buildNative lays the image out with LayoutExt4 and writes it whole to
// out. Like Build, it checks the image with e2fsck -fn, here on the
// metadata-only file (WriteMetadata), which must be enough for it; the
// tests check the whole image too.
func buildNative(ctx context.Context, t testing.TB, root string, tr *tree.Tree, out string, opts Options) (Result, error) {
	opts.Filesystem = "ext4"
	im, res, err := LayoutExt4(root, tr, opts)
	if err != nil {
		return res, err
	}
	defer im.Close()
	meta := out + ".meta"
	if err := im.WriteMetadata(meta); err != nil {
		return res, err
	}
	if b, err := exec.CommandContext(ctx, "e2fsck", "-fn", meta).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn on the metadata of the native image: %v\n%s", err, b)
	}
	return res, im.WriteFile(out)
}

func TestBuildersCoverEveryFilesystem(t *testing.T) {
	var names []string
	for _, b := range allBuilders() {
		names = append(names, b.name)
	}
	if !slices.Equal(names, []string{"ext2", "ext3", "ext4", "ext4-native", "xfs"}) {
		t.Fatalf("builders %v", names)
	}
}

// TestNativeOutOfSpace: when the native layout runs out of room the
// estimate promised, the error is a TooSmallError as mkfs's would be.
func TestNativeOutOfSpace(t *testing.T) {
	f := newFixture(t)
	f.File("a", []byte("x"), 0o644, 0, 0)
	est := estimate(f.Tree, "ext4")
	err := nativeTooSmall(fmt.Errorf("laying out: %w", &ext4.SpaceError{What: "blocks", Need: 5000, Have: 2048}), 8, est)
	var tooSmall *TooSmallError
	if !errors.As(err, &tooSmall) || !errors.Is(err, ErrTooSmall) || tooSmall.Tool != "ext4" || tooSmall.NeedMiB < 11 {
		t.Fatalf("error %v (%#v)", err, tooSmall)
	}
	want := "size=8 MiB is too small for this image: its content needs more than 8 MiB"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("message %q, want it to start %q", err, want)
	}
	if other := errors.New("other"); nativeTooSmall(other, 8, est) != other {
		t.Fatal("another error was changed")
	}
}
