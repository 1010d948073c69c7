package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/testenv"
)

// confinedQemuImg writes a qemu-img wrapper that appends to log what it was
// started with (ulimit -v in KiB, ulimit -t in seconds, its pid and process
// group, its environment as execve gave it, its arguments), then runs the
// real qemu-img.
func confinedQemuImg(t *testing.T, log string) string {
	t.Helper()
	return testenv.Script(t, "qemu-img", `#!/bin/sh
{
	echo "as=$(ulimit -v) cpu=$(ulimit -t) pid=$$ pgrp=$(cut -d' ' -f5 /proc/$$/stat)"
	echo "env=$(tr '\0' ' ' < /proc/$$/environ)"
	echo "args=$*"
} >> `+log+`
exec qemu-img "$@"
`)
}

// CreateOverlay runs qemu-img through the shared confined runner: its
// binary, its limits, an empty environment, its own process group.
func TestCreateOverlayIsConfined(t *testing.T) {
	needQEMU(t)
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "must-not-leak")
	dir := t.TempDir()
	log := filepath.Join(dir, "qemu-img.log")
	img := &qemuimg.Runner{Binary: confinedQemuImg(t, log), CPUSeconds: 17, AddressSpace: 900 << 20}
	base := filepath.Join(dir, "base.raw")
	qemuImg(t, "create", "-q", "-f", "raw", base, "3M")
	over := filepath.Join(dir, "over.qcow2")
	if err := CreateOverlay(testCtx(t, time.Minute), img, over, base, FormatRaw, 0); err != nil {
		t.Fatal(err)
	}
	if name, format, err := qcow2Backing(over); err != nil || name != base || format != "raw" {
		t.Fatalf("backing %q %q %v", name, format, err)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("the runner's binary was not run: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("log:\n%s", data)
	}
	if want := fmt.Sprintf("as=%d cpu=17 ", (900<<20)>>10); !strings.HasPrefix(lines[0], want) {
		t.Errorf("limits %q, want %q (the runner's Light limits)", lines[0], want)
	}
	var pid, pgrp string
	fmt.Sscanf(lines[0][strings.Index(lines[0], "pid="):], "pid=%s pgrp=%s", &pid, &pgrp)
	if pid == "" || pid != pgrp {
		t.Errorf("%q: want qemu-img in its own process group", lines[0])
	}
	if got, want := strings.TrimSpace(lines[1]), "env="+strings.Join(run.ChildEnv(), " "); got != want {
		t.Errorf("environment %q, want %q", got, want)
	}
	if got, want := lines[2], "args=create -q -f qcow2 -F raw -b "+base+" "+over; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}
