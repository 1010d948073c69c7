package integration

import (
	"archive/tar"
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// rootfsBenchContent is the bytes of files in the benchmark's rootfs, about
// a Linux Containers image of a full distribution.
const rootfsBenchContent = 200 << 20

// rootfsBenchSizeMiB is the filesystem both sides make.
const rootfsBenchSizeMiB = 512

// rootfsBenchVersion names the generated tarball in the cache: change it
// when the generator changes.
const rootfsBenchVersion = "rootfs-bench-v1"

// BenchmarkRootfsToQcow2 turns a ~200 MB-content rootfs .tar.xz served on
// loopback into a qcow2 image READY in S3 two ways in the same run:
// through the whole in-process stack (`slipway image create --rootfs
// --path http://… --wait`: the builder streams the download into its
// flattener, then mkfs, qemu-img and upload), and by the hand-run chain of
// real processes (`curl`, `xz -d | tar -x`, `mkfs.ext4 -d`, `qemu-img
// convert`, `s3cmd put`). It reports each one's wall time and peak RSS and
// the ratio chain/ours (>1: the stack is faster).
//
// The tarball takes a minute to make (xz): it is cached in the user's
// cache directory (slipway/<version>.tar.xz) and reused.
func BenchmarkRootfsToQcow2(b *testing.B) {
	for _, tool := range []string{"curl", "xz", "tar", "mkfs.ext4", "qemu-img", "s3cmd"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is needed: %v: run make deps", tool, err)
		}
	}
	tarball := rootfsBenchTarball(b)
	st, err := os.Stat(tarball)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, tarball)
	}))
	defer srv.Close()
	url := srv.URL + "/rootfs.tar.xz"
	s := newStack(b, stackOptions{containers: true, guestInit: buildGuestInit(b)})
	if err := s.store.Client().MakeBucket(s.ctx, chainBucket, minio.MakeBucketOptions{}); err != nil {
		b.Fatalf("make bucket %s: %v", chainBucket, err)
	}
	c := benchCase{name: "rootfs", sizeMiB: rootfsBenchSizeMiB}
	flags := []string{"--rootfs", "--size", fmt.Sprint(c.sizeMiB), "--format", "qcow2"}
	ours := func(i int) (time.Duration, int64) { return benchOurs(b, s, c, i, url, flags...) }
	chain := func(i int) (time.Duration, int64) { return benchRootfsChain(b, s, c, i, url) }
	r := benchCompare(b, 0, ours, chain)
	b.Logf("rootfs (%d MiB content, %d MiB .tar.xz, disk %d MiB): %s", rootfsBenchContent>>20, st.Size()>>20, c.sizeMiB, r)
}

// benchRootfsChain runs the hand-run chain, each step a real process, and
// returns its wall time and the sum of the steps' peak RSS.
func benchRootfsChain(b *testing.B, s *stack, c benchCase, i int, url string) (time.Duration, int64) {
	ch := newChainRun(b, s, c, i)
	tarball := filepath.Join(ch.work, "rootfs.tar.xz")
	rss := step(b, "curl", "-sSf", "-o", tarball, url)
	ch.mark("curl")
	rss += pipeSteps(b, []string{"xz", "-d", "-c", tarball}, []string{"tar", "-x", "-C", ch.root})
	ch.mark("xz|tar")
	return ch.finish(rss)
}

// rootfsBenchTarball returns the cached benchmark tarball, making it on
// first use: a busybox root with /sbin/init and rootfsBenchContent bytes
// of generated files, compressed by xz as distributions do.
func rootfsBenchTarball(b *testing.B) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "slipway")
	path := filepath.Join(dir, rootfsBenchVersion+".tar.xz")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	tmp := path + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(tmp)
	xz := exec.Command("xz", "-c", "-T0", "-6")
	xz.Stdout = out
	in, err := xz.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := xz.Start(); err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriterSize(in, 1<<20)
	tw := tar.NewWriter(bw)
	lw := &layerWriter{b: b, tw: tw}
	lw.base()
	lw.dir("sbin/")
	lw.header(&tar.Header{Name: "sbin/init", Typeflag: tar.TypeSymlink, Linkname: "../bin/busybox", Mode: 0o777})
	lw.data(0, rootfsBenchContent)
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	in.Close()
	if err := xz.Wait(); err != nil {
		b.Fatalf("xz: %v", err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("made the benchmark's rootfs %s in %s", path, time.Since(start).Round(time.Second))
	return path
}
