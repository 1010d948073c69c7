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
					if _, err := Build(context.Background(), f.root, f.tree, image, Options{Filesystem: fs}); err != nil {
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
		f.dir(fmt.Sprintf("d%03d", d), 0o755, 0, 0)
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
		f.file(p, randomBytes(size, uint64(i)), 0o644, 0, 0)
		if i%10 == 0 {
			f.hardlink(fmt.Sprintf("d%03d/link-%05d", r.IntN(dirs), i), p)
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
