package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/slipway/slipway/pkg/testenv"
)

// benchCase is one image the benchmark imports: layers of perLayer bytes of
// generated files each (the first also carrying busybox), into a disk of
// sizeMiB.
type benchCase struct {
	name     string
	layers   int
	perLayer int64
	sizeMiB  int64
}

const (
	timeBin     = "/usr/bin/time"
	chainBucket = "bench-chain"
)

// BenchmarkDockerToQcow2 turns a container image in a registry into a qcow2
// disk in S3 two ways in the same run: through the whole in-process stack
// (`slipway image create --path docker://… --wait`), and by the hand-run
// chain of real processes (`crane export | tar -x`, `mkfs.ext4 -d`,
// `qemu-img convert`, `s3cmd put`). It reports each one's wall time and peak
// RSS and the ratio chain/ours (>1: the stack is faster).
//
// The registry is Debian's docker-registry as its own process, so the
// registry's blobs never count in the test process's peak RSS.
func BenchmarkDockerToQcow2(b *testing.B) {
	crane := benchTools(b)
	host := testenv.Registry(b)
	guestInit := buildGuestInit(b)
	cases := []benchCase{
		{name: "small", layers: 1, perLayer: 18 << 20, sizeMiB: 64},
		{name: "large", layers: 5, perLayer: 100 << 20, sizeMiB: 1024},
		// The memory case: RSS must not grow with the content.
		{name: "2gib", layers: 4, perLayer: 512 << 20, sizeMiB: 3072},
	}
	for ci, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			benchDockerToQcow2(b, c, ci, host, guestInit, crane)
		})
	}
}

// benchTools fails the benchmark unless every tool the chain runs exists,
// and returns crane's path.
func benchTools(b *testing.B) string {
	crane := testenv.NeedRepoFile(b, "bin/crane", "the baseline chain runs it: run make tools")
	for _, tool := range []string{"tar", "mkfs.ext4", "qemu-img", "s3cmd", testenv.DistributionBinary} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is needed: %v: run make deps", tool, err)
		}
	}
	return crane
}

func benchDockerToQcow2(b *testing.B, c benchCase, ci int, host, guestInit, crane string) {
	ref := host + "/bench/" + c.name + ":1"
	pushBenchImage(b, c, ref)
	s := newStack(b, stackOptions{containers: true, guestInit: guestInit})
	restoreBlockProfile()
	if err := s.store.Client().MakeBucket(s.ctx, chainBucket, minio.MakeBucketOptions{}); err != nil {
		b.Fatalf("make bucket %s: %v", chainBucket, err)
	}
	url := fmt.Sprintf("docker://%s?size=%d&filesystem=ext4&format=qcow2", ref, c.sizeMiB)
	ours := func(i int) (time.Duration, int64) { return benchOurs(b, s, c, i, url) }
	chain := func(i int) (time.Duration, int64) { return benchChain(b, s, c, i, crane, ref) }
	r := benchCompare(b, ci, ours, chain)
	b.Logf("%s (%d layers, %d MiB content, disk %d MiB): %s", c.name, c.layers, int64(c.layers)*c.perLayer>>20, c.sizeMiB, r)
}

// comparison is what benchCompare measured, per iteration.
type comparison struct {
	ours, chain       time.Duration
	oursRSS, chainRSS int64
}

func (r comparison) String() string {
	return fmt.Sprintf("ours %.1fs peak RSS %d MiB; chain %.1fs peak RSS %d MiB (sum of steps); chain/ours %.2f",
		r.ours.Seconds(), r.oursRSS>>20, r.chain.Seconds(), r.chainRSS>>20, r.chain.Seconds()/r.ours.Seconds())
}

// benchCompare runs ours and the chain b.N times each, reports their mean
// wall times, peak RSS and the ratio chain/ours as metrics and returns
// them. The order alternates, starting differently per case ci, so
// neither side always runs on the other's warm page cache.
func benchCompare(b *testing.B, ci int, ours, chain func(i int) (time.Duration, int64)) comparison {
	var r comparison
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var o, ch time.Duration
		var oRSS, chRSS int64
		if (ci+i)%2 == 0 {
			o, oRSS = ours(i)
			ch, chRSS = chain(i)
		} else {
			ch, chRSS = chain(i)
			o, oRSS = ours(i)
		}
		r.ours, r.chain = r.ours+o, r.chain+ch
		r.oursRSS, r.chainRSS = max(r.oursRSS, oRSS), max(r.chainRSS, chRSS)
	}
	b.StopTimer()
	r.ours /= time.Duration(b.N)
	r.chain /= time.Duration(b.N)
	b.ReportMetric(r.ours.Seconds(), "ours-s")
	b.ReportMetric(float64(r.oursRSS)/(1<<20), "ours-peak-RSS-MiB")
	b.ReportMetric(r.chain.Seconds(), "chain-s")
	b.ReportMetric(float64(r.chainRSS)/(1<<20), "chain-peak-RSS-MiB")
	b.ReportMetric(r.chain.Seconds()/r.ours.Seconds(), "chain/ours")
	return r
}

// benchOurs imports the image (url, with flags) through the stack and returns the wall time
// until READY and the test process's peak RSS meanwhile. The first
// iteration also checks the result, outside the timing.
func benchOurs(b *testing.B, s *stack, c benchCase, i int, url string, flags ...string) (time.Duration, int64) {
	resetPeakRSS()
	if i == 0 {
		// The idle stack (nats-server, catalog, builder, converter) is part
		// of the peak; say how much.
		b.Logf("%s: test process RSS before the import %d MiB", c.name, procStatus(b, "VmRSS:")>>20)
	}
	start := time.Now()
	id, out, code := s.create(append([]string{"--name", fmt.Sprintf("bench-%s-%d", c.name, i), "--path", url}, flags...)...)
	took := time.Since(start)
	rss := readPeakRSS(b)
	if code != 0 {
		b.Fatalf("slipway image create %s: exit %d\n%s", url, code, out)
	}
	if i == 0 {
		b.StopTimer()
		checkOurs(b, s, c, id)
		b.StartTimer()
	}
	return took, rss
}

// checkOurs makes sure the benchmark timed a success: READY, qcow2 of the
// asked virtual size, and a blob whose sha256 is the catalog's.
func checkOurs(b *testing.B, s *stack, c benchCase, id int64) {
	img := s.show(id)
	if img.State != "READY" || string(img.Format) != "qcow2" || img.Size != c.sizeMiB<<20 {
		b.Fatalf("image %d: state %s format %s size %d, want READY qcow2 %d", id, img.State, img.Format, img.Size, c.sizeMiB<<20)
	}
	sum, _ := s.objectSHA256(img.Source)
	if sum != img.SHA256 {
		b.Fatalf("image %d: blob sha256 %s, catalog %s", id, sum, img.SHA256)
	}
	local := filepath.Join(b.TempDir(), "ours.qcow2")
	s.download(img.Source, local)
	if got := virtualSize(b, local); got != c.sizeMiB<<20 {
		b.Fatalf("image %d: qcow2 virtual size %d, want %d", id, got, c.sizeMiB<<20)
	}
	_ = os.Remove(local)
}

func virtualSize(b *testing.B, path string) int64 {
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	out := qemuImg(b, "info", "--output=json", path)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		b.Fatalf("qemu-img info %s: %v\n%s", path, err, out)
	}
	if info.Format != "qcow2" {
		b.Fatalf("%s: format %q, want qcow2", path, info.Format)
	}
	return info.VirtualSize
}

// benchChain runs the hand-run chain, each step a real process, and returns
// its wall time and the sum of the steps' peak RSS.
func benchChain(b *testing.B, s *stack, c benchCase, i int, crane, ref string) (time.Duration, int64) {
	ch := newChainRun(b, s, c, i)
	rss := pipeSteps(b, []string{crane, "export", "--insecure", ref, "-"}, []string{"tar", "-x", "-C", ch.root})
	ch.mark("export|tar")
	return ch.finish(rss)
}

// chainRun is one run of a hand-run chain: its work directory, with the
// tree to fill at root, and the times its steps ended.
type chainRun struct {
	b     *testing.B
	s     *stack
	c     benchCase
	i     int
	work  string
	root  string
	start time.Time
	marks []string
}

// newChainRun makes the run's work directory, removed by finish, and
// starts its clock.
func newChainRun(b *testing.B, s *stack, c benchCase, i int) *chainRun {
	work, err := os.MkdirTemp(b.TempDir(), "chain")
	if err != nil {
		b.Fatal(err)
	}
	root := filepath.Join(work, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		b.Fatal(err)
	}
	return &chainRun{b: b, s: s, c: c, i: i, work: work, root: root, start: time.Now()}
}

func (ch *chainRun) mark(what string) {
	ch.marks = append(ch.marks, fmt.Sprintf("%s %.1fs", what, time.Since(ch.start).Seconds()))
}

// finish runs the chain's common end once root is filled — `mkfs.ext4 -d`,
// `qemu-img convert`, `s3cmd put` — and returns the wall time since the
// start and the steps' peak RSS added to rss. The first iteration also
// checks the result, outside the timing.
func (ch *chainRun) finish(rss int64) (time.Duration, int64) {
	b, s, c := ch.b, ch.s, ch.c
	defer os.RemoveAll(ch.work)
	raw, qcow := filepath.Join(ch.work, "img.raw"), filepath.Join(ch.work, "img.qcow2")
	key := fmt.Sprintf("%s-%d.qcow2", c.name, ch.i)
	f, err := os.Create(raw)
	if err == nil {
		err = f.Truncate(c.sizeMiB << 20)
		f.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	rss += step(b, "mkfs.ext4", "-q", "-F", "-d", ch.root, raw)
	ch.mark("mkfs")
	rss += step(b, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
	ch.mark("convert")
	rss += step(b, "s3cmd", "--host="+s.s3.Endpoint, "--host-bucket="+s.s3.Endpoint, "--no-ssl",
		"--access_key="+s.s3.AccessKey, "--secret_key="+s.s3.SecretKey, "--no-progress",
		"put", qcow, "s3://"+chainBucket+"/"+key)
	took := time.Since(ch.start)
	ch.mark("put")

	if ch.i == 0 {
		b.StopTimer()
		b.Logf("%s: chain steps end at %s", c.name, strings.Join(ch.marks, ", "))
		checkChain(b, s, c, qcow, key)
		b.StartTimer()
	}
	_ = s.store.Client().RemoveObject(s.ctx, chainBucket, key, minio.RemoveObjectOptions{})
	return took, rss
}

// checkChain makes sure the chain made what ours makes: a qcow2 of the asked
// virtual size, stored whole.
func checkChain(b *testing.B, s *stack, c benchCase, qcow, key string) {
	if got := virtualSize(b, qcow); got != c.sizeMiB<<20 {
		b.Fatalf("chain: qcow2 virtual size %d, want %d", got, c.sizeMiB<<20)
	}
	st, err := os.Stat(qcow)
	if err != nil {
		b.Fatal(err)
	}
	obj, err := s.store.Client().StatObject(s.ctx, chainBucket, key, minio.StatObjectOptions{})
	if err != nil || obj.Size != st.Size() {
		b.Fatalf("chain: s3 object %s: size %d, err %v; local %d", key, obj.Size, err, st.Size())
	}
	raw := filepath.Join(filepath.Dir(qcow), "img.raw")
	testenv.Exec(b, "e2fsck", "-fn", raw)
}

// step runs one command of the chain and returns its peak RSS in bytes.
func step(b *testing.B, name string, args ...string) int64 {
	cmd, rssFile := measured(b, name, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stepRSS(b, cmd, rssFile)
}

// pipeSteps runs first | second and returns the sum of their peak RSS.
func pipeSteps(b *testing.B, first, second []string) int64 {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	c1, f1 := measured(b, first[0], first[1:]...)
	c2, f2 := measured(b, second[0], second[1:]...)
	var e1, e2 bytes.Buffer
	c1.Stdout, c1.Stderr = w, &e1
	c2.Stdin, c2.Stdout, c2.Stderr = r, io.Discard, &e2
	if err := c1.Start(); err != nil {
		b.Fatal(err)
	}
	if err := c2.Start(); err != nil {
		b.Fatal(err)
	}
	// Only the children hold the pipe now, so tar sees EOF when crane ends.
	w.Close()
	r.Close()
	err1, err2 := c1.Wait(), c2.Wait()
	if err1 != nil || err2 != nil {
		b.Fatalf("%s | %s: %v, %v\n%s\n%s", strings.Join(first, " "), strings.Join(second, " "), err1, err2, e1.String(), e2.String())
	}
	return stepRSS(b, c1, f1) + stepRSS(b, c2, f2)
}

// measured wraps a command in GNU time when it is installed, so its peak
// RSS (%M, KiB) lands in the returned file; otherwise the file is "" and
// the RSS comes from the process's rusage.
func measured(b *testing.B, name string, args ...string) (*exec.Cmd, string) {
	if _, err := os.Stat(timeBin); err != nil {
		return exec.Command(name, args...), ""
	}
	f, err := os.CreateTemp(b.TempDir(), "rss")
	if err != nil {
		b.Fatal(err)
	}
	f.Close()
	return exec.Command(timeBin, append([]string{"-f", "%M", "-o", f.Name(), name}, args...)...), f.Name()
}

func stepRSS(b *testing.B, cmd *exec.Cmd, rssFile string) int64 {
	if rssFile == "" {
		ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if !ok {
			b.Fatalf("%s: no rusage", cmd.Path)
		}
		return ru.Maxrss << 10
	}
	data, err := os.ReadFile(rssFile)
	if err != nil {
		b.Fatal(err)
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		b.Fatalf("%s: peak RSS %q: %v", cmd.Path, data, err)
	}
	return kb << 10
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux
// clear_refs "5"), so each phase's peak is its own.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// readPeakRSS reads VmHWM, the test process's peak resident set, in bytes.
func readPeakRSS(b *testing.B) int64 { return procStatus(b, "VmHWM:") }

// procStatus reads one kB field of /proc/self/status, in bytes.
func procStatus(b *testing.B, field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatalf("%s %v", field, err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatalf("%s parse %q: %v", field, rest, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// pushBenchImage generates the case's layers as gzipped tar files, streamed
// to disk, and pushes them as one image.
func pushBenchImage(b *testing.B, c benchCase, ref string) {
	dir := b.TempDir()
	layers := make([]v1.Layer, c.layers)
	for i := range layers {
		path := filepath.Join(dir, fmt.Sprintf("layer%d.tar.gz", i))
		writeBenchLayer(b, path, i, c.perLayer)
		l, err := tarball.LayerFromFile(path)
		if err != nil {
			b.Fatal(err)
		}
		layers[i] = l
	}
	push(b, ref, layers, v1.Config{Entrypoint: []string{"/bin/busybox"}, Cmd: []string{"sh"}})
}

// writeBenchLayer writes layer n: busybox and os-release in layer 0, then
// about size bytes of files: half pseudo-random, half text and zeros, plus
// many small text files. Everything is derived from n, so runs repeat.
func writeBenchLayer(b *testing.B, path string, n int, size int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	// BestSpeed keeps the setup short; decompression, the part measured,
	// costs about the same whatever the level.
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		b.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	lw := &layerWriter{b: b, tw: tw}
	if n == 0 {
		lw.base()
	}
	lw.data(n, size)
	for _, cl := range []io.Closer{tw, zw} {
		if err := cl.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
}

// data writes about size bytes of files under data/l<n>/: half
// pseudo-random, half text and zeros, plus many small text files.
// Everything is derived from n, so runs repeat.
func (lw *layerWriter) data(n int, size int64) {
	d := fmt.Sprintf("data/l%d/", n)
	lw.dir("data/")
	lw.dir(d)
	const small = 4 << 10
	big := (size - 200*small) / 10
	for i := 0; i < 10; i++ {
		var r io.Reader
		switch {
		case i%2 == 0:
			var seed [32]byte
			binary.LittleEndian.PutUint64(seed[:], uint64(n*100+i))
			r = rand.NewChaCha8(seed)
		case i == 5:
			r = benchZeros{}
		default:
			r = &textReader{seed: uint64(n*100 + i)}
		}
		lw.file(fmt.Sprintf("%sblob%02d", d, i), big, r)
	}
	lw.dir(d + "small/")
	for i := 0; i < 200; i++ {
		lw.file(fmt.Sprintf("%ssmall/f%03d.txt", d, i), small, &textReader{seed: uint64(n*1000 + i)})
	}
}

type layerWriter struct {
	b  *testing.B
	tw *tar.Writer
}

func (w *layerWriter) header(h *tar.Header) {
	h.ModTime = time.Unix(1700000000, 0)
	if err := w.tw.WriteHeader(h); err != nil {
		w.b.Fatal(err)
	}
}

func (w *layerWriter) dir(name string) {
	w.header(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755})
}

func (w *layerWriter) file(name string, size int64, r io.Reader) {
	w.header(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size})
	if _, err := io.CopyN(w.tw, r, size); err != nil {
		w.b.Fatalf("%s: %v", name, err)
	}
}

// base adds busybox-static, its sh link and an os-release.
func (w *layerWriter) base() {
	bb, err := os.Open("/bin/busybox")
	if err != nil {
		w.b.Fatalf("busybox-static is needed (make deps): %v", err)
	}
	defer bb.Close()
	st, err := bb.Stat()
	if err != nil {
		w.b.Fatal(err)
	}
	w.dir("bin/")
	w.header(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: st.Size()})
	if _, err := io.Copy(w.tw, bb); err != nil {
		w.b.Fatal(err)
	}
	w.header(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	w.dir("etc/")
	osr := []byte("ID=busybox\nNAME=BusyBox\n")
	w.file("etc/os-release", int64(len(osr)), bytes.NewReader(osr))
}

// benchZeros reads as endless zeros.
type benchZeros struct{}

func (benchZeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// textReader reads as endless numbered log-like lines: compressible, but
// not trivially so.
type textReader struct {
	seed uint64
	line uint64
	buf  []byte
}

var benchWords = strings.Fields("the quick brown fox jumps over a lazy dog while slipway builds disks from layers and nats carries every event to minio")

func (t *textReader) Read(p []byte) (int, error) {
	for len(t.buf) < len(p) {
		t.line++
		x := t.line*0x9e3779b97f4a7c15 ^ t.seed
		t.buf = fmt.Appendf(t.buf, "%08d level=info seq=%x", t.line, x>>40)
		for i := uint64(0); i < 6+x%6; i++ {
			t.buf = append(t.buf, ' ')
			t.buf = append(t.buf, benchWords[(x>>(i*5))%uint64(len(benchWords))]...)
		}
		t.buf = append(t.buf, '\n')
	}
	n := copy(p, t.buf)
	t.buf = t.buf[:copy(t.buf, t.buf[n:])]
	return n, nil
}

// restoreBlockProfile turns block profiling back on when -test.blockprofile
// asked for it: the stack's in-process nats-server sets the rate to its own
// ProfBlockRate (0, off) when it starts, and the profile would miss the
// import.
func restoreBlockProfile() {
	if f := flag.Lookup("test.blockprofile"); f == nil || f.Value.String() == "" {
		return
	}
	rate := 1
	if f := flag.Lookup("test.blockprofilerate"); f != nil {
		if r, err := strconv.Atoi(f.Value.String()); err == nil && r > 0 {
			rate = r
		}
	}
	runtime.SetBlockProfileRate(rate)
}
