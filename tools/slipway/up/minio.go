package up

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/tlsca"
)

// minioProc is a MinIO server running as a child process in its own
// process group, so stopping it also stops anything it forked.
type minioProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

// findMinIO resolves the MinIO binary: the configured path when it exists,
// else $SLIPWAY_MINIO_BIN, else a minio beside the slipway executable (make
// puts both in ./bin, so `bin/slipway up` works from any directory), else
// "minio" on PATH.
func findMinIO(configured string) (string, error) {
	candidates := []string{configured, os.Getenv("SLIPWAY_MINIO_BIN")}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "minio"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("minio binary not found at %q, in $SLIPWAY_MINIO_BIN or on PATH: run `make tools`, or give --s3-endpoint to use another S3 server", configured)
}

// startMinIO runs MinIO on addr; with certsDir (public.crt, private.key)
// it speaks only TLS, and is probed trusting caFile.
func startMinIO(ctx context.Context, bin, dataDir, addr, consoleAddr, accessKey, secretKey, certsDir, caFile string) (*minioProc, error) {
	if len(accessKey) < 3 {
		return nil, fmt.Errorf("minio: access key %q is too short: MinIO needs at least 3 characters", accessKey)
	}
	if len(secretKey) < 8 {
		return nil, errors.New("minio: secret key is too short: MinIO needs at least 8 characters")
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("minio: data directory: %w", err)
	}
	logPath := filepath.Join(filepath.Dir(dataDir), "minio.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("minio: log file: %w", err)
	}
	args := []string{"server", "--address", addr, "--console-address", consoleAddr, "--quiet"}
	var probe *tls.Config
	if certsDir != "" {
		args = append(args, "--certs-dir", certsDir)
		if probe, err = tlsca.ClientConfig(caFile); err != nil {
			logf.Close()
			return nil, fmt.Errorf("minio: %w", err)
		}
	}
	cmd := exec.Command(bin, append(args, dataDir)...)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+accessKey,
		"MINIO_ROOT_PASSWORD="+secretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group so Stop reaches anything MinIO forks; Pdeathsig so
	// a crashed slipway does not leave MinIO holding the port.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("minio: start %s: %w", bin, err)
	}
	p := &minioProc{cmd: cmd, exited: make(chan struct{}), log: logf}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	if err := p.waitLive(ctx, addr, probe); err != nil {
		p.stop(0)
		return nil, fmt.Errorf("minio on %s (log %s): %w", addr, logPath, err)
	}
	return p, nil
}

func (p *minioProc) waitLive(ctx context.Context, addr string, probe *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err := blob.WaitLiveTLS(ctx, addr, probe, p.exited)
	if errors.Is(err, blob.ErrExited) {
		return errors.New("exited before becoming live (is the port taken?)")
	}
	return err
}

// stop asks MinIO's process group to terminate, and kills it when it has
// not gone within grace.
func (p *minioProc) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
			p.log.Close()
			return
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.exited
	p.log.Close()
}
