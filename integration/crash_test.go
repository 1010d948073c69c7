package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestConverterKilledMidConversion runs the converter as a real process,
// kills it with SIGKILL while it converts, and starts a new one. The image
// must end READY (the redelivered command is converted again) or ERROR —
// never stuck in LOCKED — and a READY image's blob must match its sha256.
func TestConverterKilledMidConversion(t *testing.T) {
	s := newStack(t, stackOptions{noConverter: true})
	bin := testenv.Build(t, "./services/converter/cmd/converter", false)
	workDir := t.TempDir()

	progress := make(chan *nats.Msg, 256)
	sub, err := s.nc.ChanSubscribe("slipway.evt.converter.progress.>", progress)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	first := s.startConverterProcess(bin, workDir, "first")
	s.waitForService("converter")

	raw := filepath.Join(t.TempDir(), "big.raw")
	writeRandomRaw(t, raw, 1<<30)
	out := s.mustSlipway("image", "create", "--name", "crashy", "--path", raw, "--format", "qcow2", "--compression", "zstd")
	id := mustID(t, out)

	waitPhase(t, progress, "convert", 2*time.Minute)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	t.Logf("converter killed during convert; image state now %s", s.show(id).State)

	second := s.startConverterProcess(bin, workDir, "second")
	defer func() {
		_ = second.Process.Signal(syscall.SIGTERM)
		_ = second.Wait()
	}()

	img := s.waitSettled(id, 4*time.Minute)
	switch img.State {
	case "READY":
		sum, _ := s.objectSHA256(img.Source)
		if sum != img.SHA256 {
			t.Errorf("READY but the blob's sha256 %s differs from the catalog's %s", sum, img.SHA256)
		}
	case "ERROR":
		t.Logf("ended ERROR: %s", img.Error)
		for _, o := range s.objects() {
			if strings.Contains(o, fmt.Sprintf("/images/%d/", id)) {
				t.Errorf("ERROR image left a blob: %s", o)
			}
		}
	default:
		t.Fatalf("image ended %s", img.State)
	}
	// The killed converter's half-written files are swept by the next one.
	entries, err := os.ReadDir(workDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("work dir holds %v, want only the live converter's directory", names)
	}
	if n := s.incompleteUploads(); n != 0 {
		t.Errorf("%d incomplete multipart uploads left", n)
	}
	if img.State != "READY" {
		t.Errorf("the restarted converter should have finished the import: ended %s (%s)", img.State, img.Error)
	}
}

func (s *stack) startConverterProcess(bin, tmp, name string) *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"SLIPWAY_NATS_URL="+s.natsURL,
		"SLIPWAY_NATS_CREDS="+testenv.CredentialsFile(s.t, s.natsURL, identity.Service(schemas.ServiceConverter)),
		"SLIPWAY_S3_ENDPOINT="+s.s3.Endpoint,
		"SLIPWAY_S3_ACCESS_KEY="+s.s3.AccessKey,
		"SLIPWAY_S3_SECRET_KEY="+s.s3.SecretKey,
		"SLIPWAY_TMPDIR="+tmp,
	)
	logf, err := os.Create(filepath.Join(s.t.TempDir(), name+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		logf.Close()
		if s.t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			s.t.Logf("%s converter log:\n%s", name, data)
		}
	})
	return cmd
}

// waitPhase waits for a progress event of the given phase.
func waitPhase(t *testing.T, ch <-chan *nats.Msg, phase string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-ch:
			var p struct {
				Phase string `json:"phase"`
			}
			if json.Unmarshal(m.Data, &p) == nil && p.Phase == phase {
				return
			}
		case <-deadline:
			t.Fatalf("no %s progress within %s", phase, timeout)
		}
	}
}
