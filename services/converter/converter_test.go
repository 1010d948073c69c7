package converter

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/telemetry"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
)

// assertStored checks the event describes the stored object and returns
// the object as a local file.
func assertStored(t *testing.T, h *harness, ev schemas.ConverterConverted) string {
	t.Helper()
	bucket, key, err := blob.ParseURL(ev.Dest)
	if err != nil {
		t.Fatal(err)
	}
	sum, size, err := h.store.SHA256(h.ctx, bucket, key)
	if err != nil {
		t.Fatalf("stored object: %v", err)
	}
	if sum != ev.SHA256 || size != ev.Size {
		t.Fatalf("event says sha256 %s size %d, the object has %s size %d", ev.SHA256, ev.Size, sum, size)
	}
	testenv.AssertS3Checksum(t, h.ctx, h.store, ev.Dest, ev.S3Checksum)
	if err := schemas.ValidateValue("evt", Name, "converted", ev); err != nil {
		t.Errorf("converted event does not match its schema: %v", err)
	}
	return h.download(ev.Dest)
}

func assertNoObject(t *testing.T, h *harness, dest string) {
	t.Helper()
	bucket, key, _ := blob.ParseURL(dest)
	if _, err := h.store.Stat(h.ctx, bucket, key); !blob.IsNotFound(err) {
		t.Errorf("%s: want no object, Stat says %v", dest, err)
	}
}

// A qcow2 asked for as qcow2 is still rewritten by qemu-img convert: what
// QEMU opens later is qemu-img's output, never the caller's metadata (here
// 4 KiB clusters become qemu-img's 64 KiB), with the same content.
func TestImportQCOW2IsRewritten(t *testing.T) {
	h := newHarness(t, Config{})
	raw := rawDisk(t, 64<<20)
	qcow := filepath.Join(t.TempDir(), "disk.qcow2")
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", raw, qcow)
	src := h.upload(qcow, "t1/disk.qcow2")
	dest := testenv.Dest(1, "disk.qcow2")

	cmdID := h.command("import", schemas.ConverterImport{ImageID: 1, Source: src, SourceFormat: "qcow2", Dest: dest})
	var ev schemas.ConverterConverted
	hdr := h.event("converted", "1", &ev)
	if ev.Format != "qcow2" || ev.DetectedFormat != "qcow2" || ev.VirtualSize != 64<<20 || ev.ImageID != 1 {
		t.Fatalf("converted %+v", ev)
	}
	stored := assertStored(t, h, ev)
	if sumFile(t, stored) == sumFile(t, qcow) {
		t.Error("the qcow2 was stored byte for byte, not rewritten")
	}
	if b := readHead(t, stored, 24); b[23] != 16 {
		t.Errorf("stored qcow2 has cluster_bits %d, want qemu-img's 16", b[23])
	}
	qemuImg(t, "compare", "-f", "qcow2", "-F", "raw", stored, raw)
	env, err := envelope.FromHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	// The event is caused by the command and is a step of its saga.
	if env.CausationID != cmdID || env.CorrelationID != testenv.Saga || env.ID != envelope.StepID(testenv.Saga, "converted") {
		t.Errorf("envelope %+v: want causation %s, correlation %s and the step ID of \"converted\"", env, cmdID, testenv.Saga)
	}
}

func TestImportRawToCompressedQCOW2(t *testing.T) {
	h := newHarness(t, Config{})
	raw := rawDisk(t, 32<<20)
	src := h.upload(raw, "t2/disk.img")
	dest := testenv.Dest(2, "disk.qcow2")
	h.command("import", schemas.ConverterImport{ImageID: 2, Source: src, Format: "qcow2", Compression: "zstd", Dest: dest})
	var ev schemas.ConverterConverted
	h.event("converted", "2", &ev)
	if ev.Format != "qcow2" || ev.DetectedFormat != "raw" || ev.VirtualSize != 32<<20 {
		t.Fatalf("converted %+v", ev)
	}
	stored := assertStored(t, h, ev)
	info := qemuInfo(t, stored)
	if info["format"] != "qcow2" {
		t.Fatalf("stored format %v", info["format"])
	}
	spec, _ := info["format-specific"].(map[string]any)
	data, _ := spec["data"].(map[string]any)
	if data["compression-type"] != "zstd" {
		t.Errorf("compression type %v, want zstd", data["compression-type"])
	}
	back := filepath.Join(t.TempDir(), "back.raw")
	qemuImg(t, "convert", "-f", "qcow2", "-O", "raw", stored, back)
	if sumFile(t, back) != sumFile(t, raw) {
		t.Error("the converted disk does not hold the original data")
	}
}

func TestImportBackingFileRefused(t *testing.T) {
	h := newHarness(t, Config{})
	qcow := filepath.Join(t.TempDir(), "evil.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", qcow, "1M")
	src := h.upload(qcow, "t3/evil.qcow2")
	dest := testenv.Dest(3, "disk.qcow2")
	h.command("import", schemas.ConverterImport{ImageID: 3, Source: src, Dest: dest})
	var ev schemas.Failure
	h.event("failed", "3", &ev)
	if ev.Phase != string(schemas.ConverterPhaseInspect) || ev.Retryable || !strings.Contains(ev.Error, "/etc/passwd") {
		t.Fatalf("failed %+v: want a terminal inspect failure naming the backing file", ev)
	}
	assertNoObject(t, h, dest)
}

func TestImportChecksumMismatch(t *testing.T) {
	h := newHarness(t, Config{})
	src := h.upload(rawDisk(t, 4<<20), "t4/disk.raw")
	dest := testenv.Dest(4, "disk.raw")
	wrong := strings.Repeat("0", 64)
	h.command("import", schemas.ConverterImport{ImageID: 4, Source: src, Checksum: "sha256:" + wrong, Dest: dest})
	var ev schemas.Failure
	h.event("failed", "4", &ev)
	if ev.Phase != string(schemas.ConverterPhaseFetch) || ev.Retryable || !strings.Contains(ev.Error, wrong) {
		t.Fatalf("failed %+v: want a terminal fetch failure naming the digest", ev)
	}
	assertNoObject(t, h, dest)
}

// TestImportHTTPChecksums: every checksum of the command is enforced, md5
// and sha512 too, with the one catalog's checksum: a wrong md5 ends the
// job naming the algorithm, expected and actual, nothing stored; the right
// ones import.
func TestImportHTTPChecksums(t *testing.T) {
	h := newHarness(t, Config{Fetch: fetch.Options{Guard: loopback}})
	body, err := os.ReadFile(rawDisk(t, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "disk.raw", time.Unix(1700000000, 0), bytes.NewReader(body))
	}))
	defer srv.Close()
	sha := sha256.Sum256(body)
	good := md5.Sum(body)
	s512 := sha512.Sum512(body)
	wrong := strings.Repeat("0", 32)

	dest := testenv.Dest(14, "disk.raw")
	h.command("import", schemas.ConverterImport{ImageID: 14, Source: srv.URL + "/disk.raw",
		Checksum: "sha256:" + hex.EncodeToString(sha[:]), Checksums: []string{"md5:" + wrong}, Dest: dest})
	var ev schemas.Failure
	h.event("failed", "14", &ev)
	want := fmt.Sprintf("expected md5:%s, got md5:%s", wrong, hex.EncodeToString(good[:]))
	if ev.Phase != string(schemas.ConverterPhaseFetch) || ev.Retryable || !strings.Contains(ev.Error, want) ||
		!strings.Contains(ev.Error, srv.URL+"/disk.raw") {
		t.Fatalf("failed %+v: want a terminal fetch failure naming the source and %q", ev, want)
	}
	assertNoObject(t, h, dest)

	dest = testenv.Dest(15, "disk.raw")
	h.command("import", schemas.ConverterImport{ImageID: 15, Source: srv.URL + "/disk.raw",
		Checksums: []string{"md5:" + hex.EncodeToString(good[:]), "sha512:" + hex.EncodeToString(s512[:])}, Dest: dest})
	var ok schemas.ConverterConverted
	h.event("converted", "15", &ok)
	assertStored(t, h, ok)
}

func TestBadCommandsThenGood(t *testing.T) {
	h := newHarness(t, Config{})
	// Not JSON at all: no image to name, so the event's id is the command's
	// stream sequence.
	h.command("import", []byte("{not json"))
	var unknown map[string]any
	select {
	case m := <-h.events:
		if !strings.HasPrefix(m.Subject, "slipway.evt.converter.failed.cmd-") {
			t.Fatalf("got %s, want failed.cmd-<seq>", m.Subject)
		}
		if err := jsonUnmarshal(m.Data, &unknown); err != nil {
			t.Fatal(err)
		}
		if unknown["retryable"] != false || !strings.Contains(fmt.Sprint(unknown["error"]), "JSON") {
			t.Errorf("failed payload %v", unknown)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no failed event for a bad JSON command")
	}
	// JSON but invalid: the image is known.
	h.command("import", map[string]any{"image_id": 5, "source": "ftp://example.com/x", "dest": testenv.Dest(5, "disk.raw")})
	var ev schemas.Failure
	h.event("failed", "5", &ev)
	if ev.Retryable || !strings.Contains(ev.Error, "source") {
		t.Fatalf("failed %+v", ev)
	}
	// The next good command still runs.
	src := h.upload(rawDisk(t, 2<<20), "t5/disk.raw")
	h.command("import", schemas.ConverterImport{ImageID: 6, Source: src, Dest: testenv.Dest(6, "disk.raw")})
	var ok schemas.ConverterConverted
	h.event("converted", "6", &ok)
	assertStored(t, h, ok)
}

func TestImportHTTPGzipWithProgressAndJobs(t *testing.T) {
	h := newHarness(t, Config{Fetch: fetch.Options{Guard: loopback}})
	raw := rawDisk(t, 16<<20)
	plain, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	body := gz.Bytes()
	release := make(chan struct{})
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		half := len(body) / 2
		w.Write(body[:half])
		w.(http.Flusher).Flush()
		<-release // hold the job in its fetch phase
		w.Write(body[half:])
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	dest := testenv.Dest(7, "disk.raw")
	sum := sha256.Sum256(body)
	h.command("import", schemas.ConverterImport{ImageID: 7, Source: srv.URL + "/disk.raw.gz?token=secret",
		Checksum: "sha256:" + hex.EncodeToString(sum[:]), Dest: dest})

	// A progress event for the fetch, and the job in the jobs endpoint.
	var progress schemas.Progress
	waitFor(t, h.events, "slipway.evt.converter.progress.7", &progress)
	if progress.Phase != string(schemas.ConverterPhaseFetch) || progress.BytesDone == 0 || progress.BytesTotal != int64(len(body)) {
		t.Errorf("progress %+v", progress)
	}
	var jobs struct{ Jobs []JobStatus }
	if err := h.cli.Query(h.ctx, Name, "jobs", nil, &jobs); err != nil {
		t.Fatal(err)
	}
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].ImageID != 7 || jobs.Jobs[0].Phase != "fetch" {
		t.Fatalf("jobs %+v", jobs.Jobs)
	}
	if strings.Contains(jobs.Jobs[0].Source, "secret") {
		t.Errorf("jobs endpoint shows the source's query string: %s", jobs.Jobs[0].Source)
	}
	close(release)

	var ev schemas.ConverterConverted
	h.event("converted", "7", &ev)
	if ev.DetectedFormat != "raw" || ev.Format != "raw" || ev.VirtualSize != 16<<20 {
		t.Fatalf("converted %+v", ev)
	}
	if stored := assertStored(t, h, ev); sumFile(t, stored) != sumFile(t, raw) {
		t.Error("stored disk differs from the decompressed input")
	}
	if err := h.cli.Query(h.ctx, Name, "jobs", nil, &jobs); err != nil || len(jobs.Jobs) != 0 {
		t.Errorf("jobs after the end: %+v, %v", jobs.Jobs, err)
	}
}

func TestCreateBlank(t *testing.T) {
	h := newHarness(t, Config{})
	dest := testenv.Dest(8, "disk.qcow2")
	h.command("create-blank", schemas.ConverterCreateBlank{ImageID: 8, SizeMiB: 64, Format: "qcow2", FS: "ext4", Dest: dest})
	var ev schemas.ConverterConverted
	h.event("converted", "8", &ev)
	if ev.Format != "qcow2" || ev.VirtualSize != 64<<20 || ev.DetectedFormat != "" {
		t.Fatalf("converted %+v", ev)
	}
	stored := assertStored(t, h, ev)
	if info := qemuInfo(t, stored); info["format"] != "qcow2" || info["virtual-size"] != float64(64<<20) {
		t.Fatalf("stored %v", info)
	}

	// xfs below its minimum is refused with a reason.
	h.command("create-blank", schemas.ConverterCreateBlank{ImageID: 9, SizeMiB: 100, Format: "raw", FS: "xfs", Dest: testenv.Dest(9, "disk.raw")})
	var f schemas.Failure
	h.event("failed", "9", &f)
	if f.Phase != string(schemas.ConverterPhaseMkfs) || f.Retryable || !strings.Contains(f.Error, "300 MiB") {
		t.Fatalf("failed %+v", f)
	}
}

func TestFormatsEndpoint(t *testing.T) {
	h := newHarness(t, Config{})
	var f Formats
	if err := h.cli.Query(h.ctx, Name, "formats", nil, &f); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.Output, "qcow2") || !slices.Contains(f.Decompression, "zstd") || !slices.Contains(f.Filesystems, "xfs") {
		t.Fatalf("formats %+v", f)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "512M": 512 << 20, "64GiB": 64 << 30, "1T": 1 << 40, "2 GB": 2 << 30} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1P", "0"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", bad)
		}
	}
}

func waitFor(t *testing.T, ch <-chan *nats.Msg, subject string, v any) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-ch:
			if m.Subject == subject {
				if err := jsonUnmarshal(m.Data, v); err != nil {
					t.Fatal(err)
				}
				return
			}
		case <-timeout:
			t.Fatalf("no message on %s", subject)
		}
	}
}

func sumFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestRetryableFailureReportedOnLastDelivery(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "try later", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	cfg := Config{Config: worker.Config{MaxDeliver: 2}}
	cfg.Fetch.Guard = loopback
	h := newHarness(t, cfg)
	dest := testenv.Dest(10, "disk.raw")
	h.command("import", schemas.ConverterImport{ImageID: 10, Source: srv.URL + "/d", Dest: dest})
	// The first attempt is reported as it fails, with when the next comes.
	var attempt schemas.Failure
	h.event("failed", "10", &attempt)
	if attempt.Attempt != 1 || attempt.MaxAttempts != 2 || attempt.NextAttemptAt == "" || !attempt.Retryable ||
		attempt.Code != schemas.CodeUnavailable || !strings.Contains(attempt.Error, "503") {
		t.Fatalf("failed %+v: want attempt 1 of 2, retryable, unavailable, with next_attempt_at", attempt)
	}
	var ev schemas.Failure
	h.event("failed", "10", &ev)
	if ev.Phase != string(schemas.ConverterPhaseFetch) || !ev.Retryable || !strings.Contains(ev.Error, "503") ||
		ev.Attempt != 2 || ev.NextAttemptAt != "" || ev.Code != schemas.CodeUnavailable {
		t.Fatalf("failed %+v: want the final report of attempt 2, a retryable fetch failure", ev)
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("%d requests, want one per delivery (2)", n)
	}
	assertNoObject(t, h, dest)
}

// TestImportFromUnresolvableHost: a host name that does not resolve fails
// the import at once, for good, with host-not-found: one delivery, no
// retry, within seconds.
func TestImportFromUnresolvableHost(t *testing.T) {
	h := newHarness(t, Config{})
	start := time.Now()
	h.command("import", schemas.ConverterImport{ImageID: 14, Source: "https://nonexistent.invalid/x.qcow2", Dest: testenv.Dest(14, "disk.qcow2")})
	var ev schemas.Failure
	h.event("failed", "14", &ev)
	if ev.Code != schemas.CodeHostNotFound || ev.Retryable || ev.NextAttemptAt != "" || ev.Attempt != 1 ||
		ev.Phase != string(schemas.ConverterPhaseFetch) || !strings.Contains(ev.Error, "nonexistent.invalid") {
		t.Fatalf("failed %+v: want a final host-not-found fetch failure on the first attempt", ev)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("failed after %s", took)
	}
}

func TestImportVMDKToQCOW2Traced(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	defer telemetry.InstallForTest(exp)()
	h := newHarness(t, Config{})
	raw := rawDisk(t, 8<<20)
	vmdk := filepath.Join(t.TempDir(), "disk.vmdk")
	qemuImg(t, "convert", "-f", "raw", "-O", "vmdk", raw, vmdk)
	src := h.upload(vmdk, "t11/disk.vmdk")
	h.command("import", schemas.ConverterImport{ImageID: 11, Source: src, SourceFormat: "vmdk", Format: "qcow2",
		Dest: testenv.Dest(11, "disk.qcow2")})
	var ev schemas.ConverterConverted
	h.event("converted", "11", &ev)
	if ev.DetectedFormat != "vmdk" || ev.Format != "qcow2" || ev.VirtualSize != 8<<20 {
		t.Fatalf("converted %+v", ev)
	}
	back := filepath.Join(t.TempDir(), "back.raw")
	qemuImg(t, "convert", "-f", "qcow2", "-O", "raw", assertStored(t, h, ev), back)
	if sumFile(t, back) != sumFile(t, raw) {
		t.Error("converted disk differs from the original")
	}

	// Spans are ended before the event is published, except the handler's.
	deadline := time.Now().Add(5 * time.Second)
	for {
		spans := exp.GetSpans()
		byName := map[string]tracetest.SpanStub{}
		for _, s := range spans {
			byName[s.Name] = s
		}
		process, ok := byName["slipway.cmd.converter.import process"]
		if ok {
			for _, name := range []string{"converter.fetch", "converter.inspect", "converter.convert", "converter.upload"} {
				s, ok := byName[name]
				if !ok {
					t.Fatalf("no span %s among %d spans", name, len(spans))
				}
				if !hasAttr(s, "slipway.service", "converter") {
					t.Errorf("span %s lacks slipway.service=converter", name)
				}
				if s.Parent.SpanID() != process.SpanContext.SpanID() {
					t.Errorf("span %s is not a child of the handler span", name)
				}
			}
			if !hasAttr(process, "slipway.service", "converter") {
				t.Error("handler span lacks slipway.service=converter")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no handler span among %d spans", len(spans))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasAttr(s tracetest.SpanStub, key, value string) bool {
	for _, a := range s.Attributes {
		if string(a.Key) == key && a.Value.AsString() == value {
			return true
		}
	}
	return false
}

func readHead(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImportFromRefusedAddressFails: without SLIPWAY_FETCH_ALLOW an import
// from a loopback URL fails at once, for good, naming the address and the
// setting, and the server never sees a request.
func TestImportFromRefusedAddressFails(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = w.Write(make([]byte, 1<<20))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	h := newHarness(t, Config{})
	dest := testenv.Dest(12, "disk.raw")
	h.command("import", schemas.ConverterImport{ImageID: 12, Source: srv.URL + "/disk.raw", Dest: dest})
	var ev schemas.Failure
	h.event("failed", "12", &ev)
	want := "refusing to connect to " + host + " (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it"
	if ev.Phase != string(schemas.ConverterPhaseFetch) || ev.Retryable || !strings.Contains(ev.Error, want) ||
		ev.Code != schemas.CodeAccessDenied {
		t.Errorf("failed %+v\nwant a final fetch failure containing %q", ev, want)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the server saw %d requests", n)
	}
	assertNoObject(t, h, dest)
}

// A source that sends half its body and then stalls keeps the job alive
// through its heartbeats; the job deadline ends it, once, as a final
// failure with nothing stored.
func TestJobDeadlineEndsAStalledFetch(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(2<<20))
		_, _ = w.Write(make([]byte, 1<<20))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	cfg := Config{Config: worker.Config{JobDeadline: 2 * time.Second, AckWait: 500 * time.Millisecond}}
	cfg.Fetch.Guard = loopback
	cfg.Fetch.Retries = -1
	h := newHarness(t, cfg)
	dest := testenv.Dest(13, "disk.raw")
	start := time.Now()
	h.command("import", schemas.ConverterImport{ImageID: 13, Source: srv.URL + "/disk.raw", Dest: dest})
	var ev schemas.Failure
	h.event("failed", "13", &ev)
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("failed after %s, before the deadline", took)
	}
	want := "the job ran longer than its deadline of 2s (SLIPWAY_JOB_DEADLINE)"
	if ev.Retryable || !strings.Contains(ev.Error, want) || ev.Code != schemas.CodeDeadlineExceeded {
		t.Errorf("failed %+v\nwant a final failure containing %q", ev, want)
	}
	time.Sleep(1500 * time.Millisecond) // past AckWait and a backoff
	if n := requests.Load(); n != 1 {
		t.Errorf("the source was fetched %d times, want once", n)
	}
	assertNoObject(t, h, dest)
}
