package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipway/slipway/pkg/blob"
)

// S3 describes a running S3-compatible server.
type S3 struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Secure    bool
}

// minioRegion is MinIO's default region; naming it spares minio-go a
// bucket-location round trip before presigning.
const minioRegion = "us-east-1"

// BlobConfig returns the blob.Config that reaches this server.
func (s S3) BlobConfig() blob.Config {
	return blob.Config{
		Endpoint:  s.Endpoint,
		AccessKey: s.AccessKey,
		SecretKey: s.SecretKey,
		Secure:    s.Secure,
		Region:    minioRegion,
	}
}

// ErrMinIONotFound is returned by StartMinIO when no minio binary exists.
var ErrMinIONotFound = errors.New("minio binary not found: run `make tools`")

const minioReadyTimeout = 30 * time.Second

// MinIOBinary finds the minio binary: $SLIPWAY_MINIO_BIN, then
// <repo root>/bin/minio, then PATH.
func MinIOBinary() (string, error) {
	if p := os.Getenv("SLIPWAY_MINIO_BIN"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("SLIPWAY_MINIO_BIN=%q is not an executable file: %w", p, ErrMinIONotFound)
	}
	if root, err := RepoRoot(); err == nil {
		if p := filepath.Join(root, "bin", "minio"); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", ErrMinIONotFound
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// StartMinIO starts a MinIO server process storing its data in dir, with
// random credentials, and waits until it is live. stop kills the process
// group and waits for it; it is safe to call more than once.
func StartMinIO(dir string) (s3 S3, stop func(), err error) {
	bin, err := MinIOBinary()
	if err != nil {
		return S3{}, nil, err
	}
	// A free port can be taken by someone else between probing and
	// binding; retry on a new port when MinIO dies early.
	for attempt := 0; attempt < 3; attempt++ {
		s3, stop, err = startMinIO(bin, dir)
		if err == nil || !errors.Is(err, errExitedEarly) {
			return s3, stop, err
		}
	}
	return S3{}, nil, err
}

var errExitedEarly = errors.New("minio exited before becoming live")

func startMinIO(bin, dir string) (S3, func(), error) {
	apiPort, err := FreePort()
	if err != nil {
		return S3{}, nil, err
	}
	s3 := S3{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", apiPort),
		AccessKey: "slipway-" + randomHex(6),
		SecretKey: randomHex(20),
	}
	stop, err := runMinIO(bin, dir, s3)
	return s3, stop, err
}

// RestartMinIO starts MinIO again as s3 (its address and keys) on dir, the
// data of a server the test stopped: what clients see of a restart.
func RestartMinIO(dir string, s3 S3) (stop func(), err error) {
	bin, err := MinIOBinary()
	if err != nil {
		return nil, err
	}
	return runMinIO(bin, dir, s3)
}

// runMinIO runs MinIO as s3 on dir until stop is called.
func runMinIO(bin, dir string, s3 S3) (func(), error) {
	consolePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "server",
		"--address", s3.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", consolePort),
		dir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s3.AccessKey,
		"MINIO_ROOT_PASSWORD="+s3.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1", // quiets the "not a dedicated drive" checks of a tmp dir
	)
	logs := &Buffer{Max: 64 << 10} // a chatty server cannot grow the test
	cmd.Stdout, cmd.Stderr = logs, logs
	// Own process group so stop can kill MinIO and anything it forks;
	// Pdeathsig so a crashed or timed-out test binary does not leak it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start minio %q: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		})
	}
	if err := waitLive(s3.Endpoint, exited); err != nil {
		stop()
		return nil, fmt.Errorf("minio %s on %s: %w\n--- minio output ---\n%s", bin, s3.Endpoint, err, strings.TrimSpace(logs.String()))
	}
	return stop, nil
}

func waitLive(endpoint string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), minioReadyTimeout)
	defer cancel()
	if err := blob.WaitLive(ctx, endpoint, exited); errors.Is(err, blob.ErrExited) {
		return errExitedEarly
	} else if err != nil {
		return fmt.Errorf("after %s: %w", minioReadyTimeout, err)
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RepoRoot walks up from the working directory to the directory that holds
// go.work.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("repo root: no go.work in %q or any parent", wd)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
