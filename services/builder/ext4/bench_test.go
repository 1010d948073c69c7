package ext4

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkNew times the layout of a tree of 10000 entries (500
// directories, 9500 files of 1 to 64 KiB, every tenth with an xattr) and
// counts its allocations; -benchmem shows them per layout.
//
//	go test -run '^$' -bench New -benchmem ./services/builder/ext4
func BenchmarkNew(b *testing.B) {
	f := newFixture(b)
	for d := range 500 {
		f.Dir(fmt.Sprintf("d%03d", d), 0o755, 0, 0)
	}
	for i := range 9500 {
		e := f.File(fmt.Sprintf("d%03d/file-%05d", i%500, i), randomBytes(1024+i%64*1024, uint64(i)), 0o644, 0, 0)
		if i%10 == 0 {
			e.Xattrs = map[string]string{"user.i": fmt.Sprint(i)}
		}
	}
	opts := testOptions()
	opts.SizeBytes, opts.Inodes = 1<<30, 16384
	root := openRoot(f)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		im, err := New(root, f.Tree, opts)
		if err != nil {
			b.Fatal(err)
		}
		im.Close()
	}
	b.StopTimer()
	im, _ := New(root, f.Tree, opts)
	defer im.Close()
	if err := im.WriteMetadata(filepath.Join(b.TempDir(), "m.img")); err != nil {
		b.Fatal(err)
	}
	var ranges int64
	for _, r := range im.DataRanges() {
		ranges += r.Len
	}
	b.ReportMetric(float64(ranges)/float64(1<<20), "data-MiB")
}
