package oci_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway/slipway/pkg/oci"
)

const distributionBinary = "/usr/bin/docker-registry"

// startDistribution runs Debian's docker-registry (the distribution
// registry) on a free loopback port with a temporary filesystem store.
func startDistribution(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(distributionBinary); err != nil {
		t.Fatalf("%s is needed (Debian package docker-registry): %v", distributionBinary, err)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close() // the registry binds it again below; a clash fails the readiness wait
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(distributionBinary, "serve", cfg)
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	waitReady(t, host, exited, logPath)
	return host
}

// waitReady polls /v2/ until the registry answers, it exits, or 30 s pass.
func waitReady(t *testing.T, host string, exited <-chan error, logPath string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("docker-registry exited: %v\n%s", err, log)
		case <-deadline:
			t.Fatalf("docker-registry on %s not ready after 30s", host)
		case <-tick.C:
		}
	}
}

// TestDistributionRegistry runs the main paths against the real registry.
func TestDistributionRegistry(t *testing.T) {
	ctx := context.Background()
	host := startDistribution(t)

	amd := busyboxImage(t, "linux/amd64")
	arm := busyboxImage(t, "linux/arm64")
	push(t, host+"/slipway/busybox:musl", amd)
	idx := pushIndex(t, host+"/slipway/multi:1", map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm})

	res, err := oci.Resolve(ctx, host+"/slipway/busybox:musl", oci.Options{Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != digestOf(t, amd) || res.Kind != oci.KindContainer {
		t.Fatalf("resolved %+v", res)
	}
	for platform, want := range map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm} {
		r, err := oci.Resolve(ctx, host+"/slipway/multi:1", oci.Options{Guard: loopback, Platform: platform})
		if err != nil || r.Digest != digestOf(t, want) || r.Index != idx {
			t.Fatalf("%s: %+v %v", platform, r, err)
		}
	}
	_, err = oci.Resolve(ctx, host+"/slipway/multi:1", oci.Options{Guard: loopback, Platform: "linux/ppc64le"})
	mustContain(t, err, "no linux/ppc64le image in "+host+"/slipway/multi: available linux/amd64, linux/arm64")

	pulled, err := pullAll(t, ctx, res.Reference, t.TempDir(), oci.Options{Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	assertSameLayers(t, amd, pulled)

	_, err = oci.Resolve(ctx, host+"/slipway/busybox:nope", oci.Options{Guard: loopback})
	mustContain(t, err, "registry "+host+": MANIFEST_UNKNOWN: manifest unknown", `(tag "nope" in slipway/busybox)`)
	_, err = oci.Resolve(ctx, host+"/slipway/ghost:1", oci.Options{Guard: loopback})
	// distribution answers an unknown repository's manifest with MANIFEST_UNKNOWN.
	mustContain(t, err, "registry "+host+": MANIFEST_UNKNOWN: manifest unknown", `(tag "1" in slipway/ghost)`)
	var re *oci.RegistryError
	if !errors.As(err, &re) || re.Status != http.StatusNotFound {
		t.Fatalf("%#v", err)
	}

	disk := filepath.Join(t.TempDir(), "vm.qcow2")
	writeRandom(t, disk, 2<<20+3)
	testPushDisk(t, ctx, host, disk)
}

// TestDistributionMemoryBounded pulls a 48 MiB disk image from the real
// registry (another process, so its buffers do not count) and streams the
// disk out, checking that this process allocated far less than the image.
func TestDistributionMemoryBounded(t *testing.T) {
	ctx := context.Background()
	host := startDistribution(t)
	const size = 48 << 20
	disk := filepath.Join(t.TempDir(), "big.raw")
	writeRandom(t, disk, size)
	if _, err := oci.PushDisk(ctx, host+"/vms/big:1", disk, oci.Options{Guard: loopback}); err != nil {
		t.Fatal(err)
	}
	res, err := oci.Resolve(ctx, host+"/vms/big:1", oci.Options{Guard: loopback})
	if err != nil || res.Kind != oci.KindDisk {
		t.Fatalf("%+v %v", res, err)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	img, err := pullAll(t, ctx, res.Reference, t.TempDir(), oci.Options{Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	_, rc, n, err := oci.DiskFile(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || copied != size || n != size {
		t.Fatalf("streamed %d of %d bytes: %v", copied, n, err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Fatalf("pull and stream of a %d MiB image allocated %d MiB", size>>20, alloc>>20)
	} else {
		t.Logf("pull and stream of a %d MiB image allocated %.1f MiB in all", size>>20, float64(alloc)/(1<<20))
	}
}
