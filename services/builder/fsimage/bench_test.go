package fsimage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBuild times whole builds (mkfs, fixes, checks and the read-back
// Build does) of synthetic trees with hard links: a small one and one of
// about 200 MB. ext4 is there for comparison.
//
//	go test -run '^$' -bench Build -benchtime 1x ./services/builder/fsimage
func BenchmarkBuild(b *testing.B) {
	for _, c := range []struct {
		name  string
		files int
	}{{"small", 300}, {"200MB", 2000}} {
		f := benchTree(b, c.files)
		for _, fs := range []string{"xfs", "ext4"} {
			b.Run(c.name+"/"+fs, func(b *testing.B) {
				before := childCPU()
				for range b.N {
					image := filepath.Join(b.TempDir(), "bench.img")
					if _, err := Build(context.Background(), f.Root, f.Tree, image, Options{Filesystem: fs}); err != nil {
						b.Fatal(err)
					}
				}
				// The tools' CPU time: steadier than wall time on shared cores.
				b.ReportMetric((childCPU()-before).Seconds()/float64(b.N), "tool-cpu-s/op")
			})
		}
	}
}

// benchTree makes files in 20 directories per 100 files, sized like a
// distribution's (most a few KiB, some 100 KiB, a few 1.5 MiB: about 100
// KiB on average), and a hard link for every tenth file.
func benchTree(b *testing.B, files int) *fixture {
	f := newFixture(b)
	r := rand.New(rand.NewPCG(1, 2))
	dirs := files / 5
	for d := range dirs {
		f.Dir(fmt.Sprintf("d%03d", d), 0o755, 0, 0)
	}
	var total int
	for i := range files {
		size := 4 << 10
		switch p := r.IntN(100); {
		case p < 5:
			size = 1536 << 10
		case p < 30:
			size = 100 << 10
		}
		total += size
		p := fmt.Sprintf("d%03d/file-%05d", r.IntN(dirs), i)
		f.File(p, randomBytes(size, uint64(i)), 0o644, 0, 0)
		if i%10 == 0 {
			f.Hardlink(fmt.Sprintf("d%03d/link-%05d", r.IntN(dirs), i), p)
		}
	}
	b.Logf("%d files, %d hard links, %d MiB", files, files/10, total>>20)
	return f
}

// childCPU is the user and system time of the finished child processes.
func childCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkExt4Large compares the two ext4 builders on the integration
// benchmark's large image (5 layers of 10 files of 10 MiB and 200 of 4
// KiB, about 500 MiB, a 1 GiB disk): Build (mkfs.ext4 -d, debugfs,
// e2fsck) against LayoutExt4 plus WriteMetadata plus e2fsck -fn of that
// file, the native path's equivalent before the qcow2 writer reads the
// image. layout-ms/op is LayoutExt4 alone.
//
//	go test -run '^$' -bench Ext4Large -benchtime 3x ./services/builder/fsimage
func BenchmarkExt4Large(b *testing.B) {
	f := newFixture(b)
	f.Dir("data", 0o755, 0, 0)
	for l := range 5 {
		d := fmt.Sprintf("data/l%d", l)
		f.Dir(d, 0o755, 0, 0)
		f.Dir(d+"/small", 0o755, 0, 0)
		for i := range 10 {
			content := randomBytes(10<<20, uint64(l*100+i))
			if i == 5 {
				content = make([]byte, 10<<20)
			}
			f.File(fmt.Sprintf("%s/blob%02d", d, i), content, 0o644, 0, 0)
		}
		for i := range 200 {
			f.File(fmt.Sprintf("%s/small/f%03d.txt", d, i), randomBytes(4<<10, uint64(l*1000+i)), 0o644, 0, 0)
		}
	}
	b.Logf("%d entries", f.Tree.Len())
	opts := Options{Filesystem: "ext4", SizeMiB: 1024}
	var mkfs, native, layout time.Duration
	for range b.N { // alternating, so neither side always runs on a warmer cache
		start := time.Now()
		if _, err := Build(context.Background(), f.Root, f.Tree, filepath.Join(b.TempDir(), "disk.img"), opts); err != nil {
			b.Fatal(err)
		}
		mkfs += time.Since(start)
		start = time.Now()
		im, _, err := LayoutExt4(f.Root, f.Tree, opts)
		if err != nil {
			b.Fatal(err)
		}
		layout += time.Since(start)
		meta := filepath.Join(b.TempDir(), "meta.img")
		if err := im.WriteMetadata(meta); err != nil {
			b.Fatal(err)
		}
		im.Close()
		if _, err := run(context.Background(), nil, "e2fsck", "-fn", meta); err != nil {
			b.Fatal(err)
		}
		native += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(mkfs.Seconds()/n, "mkfs-s/op")
	b.ReportMetric(native.Seconds()/n, "native-s/op")
	b.ReportMetric(float64(layout.Milliseconds())/n, "layout-ms/op")
	b.ReportMetric(mkfs.Seconds()/native.Seconds(), "mkfs/native")
}
