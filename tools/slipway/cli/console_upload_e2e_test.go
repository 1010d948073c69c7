package cli

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/tools/slipway/up"
)

// uploadSize is the desktop file TestConsoleUpload sends: past the ~1 GB
// where Sunstone's uploads time out.
const uploadSize = 1536 << 20

// sent is how many bytes the page's upload bar says S3 holds.
func (p *consolePage) sent() float64 {
	return eval[float64](p, "read the upload bar", `document.querySelector("#upload-progress").value`)
}

// diskFile writes a sparse file of size bytes, random 1 MiB blocks every
// 64 MiB from 1 MiB on (the first MiB zero, so that it inspects as a raw
// disk), and returns its path and SHA-256.
func diskFile(t *testing.T, size int64) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "desktop-disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<20)
	for off := int64(1 << 20); off+int64(len(block)) <= size; off += 64 << 20 {
		_, _ = rand.Read(block)
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

// browserMemory is the memory of every process under this test whose
// command is chromium's, in bytes: the sum of their proportional set sizes
// (a page shared by n processes counts 1/n in each, so nothing twice).
func browserMemory(t *testing.T) int64 {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	parent := map[int]int{}
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		stat, err := os.ReadFile(p + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so read after ")".
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 {
			parent[pid], _ = strconv.Atoi(fields[1])
		}
	}
	mine := func(pid int) bool {
		for i := 0; pid > 1 && i < 64; i++ {
			if pid == os.Getpid() {
				return true
			}
			pid = parent[pid]
		}
		return false
	}
	var total int64
	for pid := range parent {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !mine(pid) || !strings.Contains(string(cmd), "chrom") {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if kb, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
				total += n << 10
			}
		}
		f.Close()
	}
	return total
}

// TestConsoleUpload sends a 1.5 GiB disk from the desktop through the web
// console, in Debian's chromium against a real `slipway up` whose MinIO
// the test can restart: alice picks the file and the bar moves; MinIO is
// killed mid-upload and the page says it keeps trying, then goes on once
// MinIO is back; the page is reloaded mid-upload, alice logs in again, is
// told of the unfinished upload, picks the same file and the page sends
// only the parts S3 lacks; the image goes LOCKED → READY in her list; the
// blob's bytes are the file's (SHA-256 and size, read back through a
// presigned URL), and chromium's memory grew by far less than the file.
func TestConsoleUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 1.5 GiB through a browser: not with -short")
	}
	newTab := browser(t)
	minioDir := t.TempDir()
	s3, stopMinIO, err := testenv.StartMinIO(minioDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopMinIO() })
	flags, _, st := stackWith(t, func(c *up.Config) {
		c.WebSocketAddr = "127.0.0.1:-1"
		c.ConsoleHTTPAddr = "127.0.0.1:0"
		c.S3 = s3.BlobConfig() // one the test can restart
	})
	creds := filepath.Join(t.TempDir(), "alice.creds")
	must(t, slipway(t, flags, "user", "create", "alice", "--out", creds), "user create alice")
	as := append([]string{}, flags...)
	for i := range as {
		if as[i] == "--creds" {
			as[i+1] = creds
		}
	}
	file, fileSum := diskFile(t, uploadSize)

	ctx, cancel := newTab()
	defer cancel()
	alice := &consolePage{t: t, ctx: ctx, shot: screenshotDir(t)}
	alice.login(st.ConsoleURL, creds)
	alice.waitFor("the upload form", `!document.querySelector("#upload").hidden`)
	baseline := browserMemory(t)
	alice.run("pick the file and upload", chromedp.SetUploadFiles(chromedp.CSS("#upload-file"), []string{file}),
		chromedp.SetValue(chromedp.CSS("#upload-name"), "desktop-disk"), chromedp.Click(chromedp.CSS("#upload-button")))

	var bar []float64 // the bar's readings, to see it move
	var peak int64
	watch := func() {
		if v := alice.sent(); len(bar) == 0 || v != bar[len(bar)-1] {
			bar = append(bar, v)
		}
		peak = max(peak, browserMemory(t))
	}
	until := func(what string, fraction float64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Minute); alice.sent() < fraction*uploadSize; time.Sleep(300 * time.Millisecond) {
			watch()
			if time.Now().After(deadline) {
				alice.screenshot("timeout-" + strings.ReplaceAll(what, " ", "-"))
				t.Fatalf("%s: the bar stayed at %.0f of %d bytes (status %q, error %q)", what, alice.sent(), uploadSize, alice.text("#upload-status"), alice.text("#error"))
			}
		}
	}
	start := time.Now()

	// MinIO dies a quarter of the way through; the page keeps trying.
	until("a quarter sent", 0.25)
	stopMinIO()
	t.Logf("MinIO killed at %.0f%% after %s", 100*alice.sent()/uploadSize, time.Since(start))
	alice.waitFor("the page retrying while MinIO is down", `document.querySelector("#upload-status").textContent.includes("trying again")`)
	alice.screenshot("upload-retrying")
	time.Sleep(2 * time.Second)
	if stopMinIO, err = testenv.RestartMinIO(minioDir, s3); err != nil {
		t.Fatal(err)
	}
	t.Logf("MinIO back after %s", time.Since(start))

	// Past half, the page is reloaded: logged out, the upload's state kept.
	until("past half after MinIO's restart", 0.55)
	before := alice.sent()
	alice.run("reload", chromedp.Reload())
	alice.login(st.ConsoleURL, creds)
	alice.waitFor("the unfinished upload offered", `document.querySelector("#upload-pending").textContent.includes("desktop-disk.raw")`)
	alice.screenshot("upload-unfinished")
	alice.run("pick the same file again", chromedp.SetUploadFiles(chromedp.CSS("#upload-file"), []string{file}),
		chromedp.SetValue(chromedp.CSS("#upload-name"), "desktop-disk"), chromedp.Click(chromedp.CSS("#upload-button")))
	alice.waitWithin("parts S3 holds skipped", `/\d+ parts? already in S3/.test(document.querySelector("#upload-status").textContent)`, 3*time.Minute)
	for eval[string](alice, "phase", `document.querySelector("#upload").dataset.phase`) != "created" {
		watch()
		if time.Since(start) > 15*time.Minute {
			t.Fatalf("upload not done in 15 minutes: %q, error %q", alice.text("#upload-status"), alice.text("#error"))
		}
		if eval[string](alice, "phase", `document.querySelector("#upload").dataset.phase`) == "failed" {
			t.Fatalf("upload failed: %q", alice.text("#error"))
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Every part S3 had acknowledged before the reload was skipped (some
	// in flight then may have landed too).
	skipped := eval[float64](alice, "parts skipped", `Number(document.querySelector("#upload").dataset.skipped)`)
	if held := skipped * (16 << 20); held < before || held > before+5*(16<<20) {
		t.Errorf("after the reload %.0f parts (%.0f bytes) were skipped; S3 had acknowledged %.0f bytes before it", skipped, held, before)
	}
	t.Logf("uploaded %d bytes in %s with a MinIO restart and a reload; %.0f parts skipped after the reload; bar readings %d; chromium's memory (PSS) %d MiB before, %d MiB at the most",
		uploadSize, time.Since(start), skipped, len(bar), baseline>>20, peak>>20)
	if len(bar) < 10 {
		t.Errorf("the bar moved through %d values only: %v", len(bar), bar)
	}
	// Flat: what the upload adds is a few parts, not the file.
	if baseline == 0 || peak-baseline > uploadSize/4 {
		t.Errorf("chromium's memory (PSS) grew from %d to %d MiB during a %d MiB upload (0: not measured): not flat", baseline>>20, peak>>20, uploadSize>>20)
	}

	// The image: LOCKED → READY in the live list, and its bytes are the file's.
	alice.waitWithin("desktop-disk READY", rowJS("desktop-disk")+`?.dataset.state === "READY"`, 10*time.Minute)
	alice.run("open desktop-disk", chromedp.Evaluate[chromedp.Void](rowJS("desktop-disk")+`.click()`))
	alice.waitFor("history LOCKED → READY", `document.querySelector("#detail-history").textContent.includes("LOCKED → READY")`)
	alice.screenshot("upload-ready")
	u := strings.TrimSpace(must(t, slipway(t, as, "image", "url", "desktop-disk"), "image url").stdout)
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reading the blob back: %s, %v", resp.Status, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != uploadSize || got != fileSum {
		t.Errorf("the image's blob: %d bytes, SHA-256 %s; the file: %d bytes, %s", n, got, uploadSize, fileSum)
	}
}
