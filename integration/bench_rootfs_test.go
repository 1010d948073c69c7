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
	"strings"
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

	var ours, chain time.Duration
	var oursRSS, chainRSS int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var o, ch time.Duration
		var oRSS, chRSS int64
		// Alternate the order so neither side always runs on the other's
		// warm page cache.
		if i%2 == 0 {
			o, oRSS = benchOurs(b, s, c, i, url, "--rootfs", "--size", fmt.Sprint(c.sizeMiB), "--format", "qcow2")
			ch, chRSS = benchRootfsChain(b, s, c, i, url)
		} else {
			ch, chRSS = benchRootfsChain(b, s, c, i, url)
			o, oRSS = benchOurs(b, s, c, i, url, "--rootfs", "--size", fmt.Sprint(c.sizeMiB), "--format", "qcow2")
		}
		ours, chain = ours+o, chain+ch
		oursRSS, chainRSS = max(oursRSS, oRSS), max(chainRSS, chRSS)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(ours.Seconds()/n, "ours-s")
	b.ReportMetric(float64(oursRSS)/(1<<20), "ours-peak-RSS-MiB")
	b.ReportMetric(chain.Seconds()/n, "chain-s")
	b.ReportMetric(float64(chainRSS)/(1<<20), "chain-peak-RSS-MiB")
	b.ReportMetric(chain.Seconds()/ours.Seconds(), "chain/ours")
	b.Logf("rootfs (%d MiB content, %d MiB .tar.xz, disk %d MiB): ours %.1fs peak RSS %d MiB; chain %.1fs peak RSS %d MiB (sum of steps); chain/ours %.2f",
		rootfsBenchContent>>20, st.Size()>>20, c.sizeMiB, ours.Seconds()/n, oursRSS>>20,
		chain.Seconds()/n, chainRSS>>20, chain.Seconds()/ours.Seconds())
}

// benchRootfsChain runs the hand-run chain, each step a real process, and
// returns its wall time and the sum of the steps' peak RSS.
func benchRootfsChain(b *testing.B, s *stack, c benchCase, i int, url string) (time.Duration, int64) {
	work, err := os.MkdirTemp(b.TempDir(), "chain")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(work)
	root, tarball := filepath.Join(work, "root"), filepath.Join(work, "rootfs.tar.xz")
	raw, qcow := filepath.Join(work, "img.raw"), filepath.Join(work, "img.qcow2")
	key := fmt.Sprintf("%s-%d.qcow2", c.name, i)
	if err := os.Mkdir(root, 0o755); err != nil {
		b.Fatal(err)
	}

	start := time.Now()
	var marks []string
	mark := func(what string) { marks = append(marks, fmt.Sprintf("%s %.1fs", what, time.Since(start).Seconds())) }
	rss := step(b, "curl", "-sSf", "-o", tarball, url)
	mark("curl")
	rss += pipeSteps(b, []string{"xz", "-d", "-c", tarball}, []string{"tar", "-x", "-C", root})
	f, err := os.Create(raw)
	if err == nil {
		err = f.Truncate(c.sizeMiB << 20)
		f.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	mark("xz|tar")
	rss += step(b, "mkfs.ext4", "-q", "-F", "-d", root, raw)
	mark("mkfs")
	rss += step(b, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
	mark("convert")
	rss += step(b, "s3cmd", "--host="+s.s3.Endpoint, "--host-bucket="+s.s3.Endpoint, "--no-ssl",
		"--access_key="+s.s3.AccessKey, "--secret_key="+s.s3.SecretKey, "--no-progress",
		"put", qcow, "s3://"+chainBucket+"/"+key)
	took := time.Since(start)
	mark("put")

	if i == 0 {
		b.StopTimer()
		b.Logf("%s: chain steps end at %s", c.name, strings.Join(marks, ", "))
		checkChain(b, s, c, qcow, key)
		b.StartTimer()
	}
	_ = s.store.Client().RemoveObject(s.ctx, chainBucket, key, minio.RemoveObjectOptions{})
	return took, rss
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
