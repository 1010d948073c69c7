package testenv

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// ServiceProcess runs bin, the program of the service named service (built
// from this repository, e.g. with Binary), against the NATS server at url
// with that service's credentials and against s3, with env ("NAME=value")
// added to the test's environment; its output goes to the test log. It
// returns once the service answers NATS micro's PING, and fails the test
// when the process exits first or does not answer within 30 seconds. The
// process is stopped when the test ends: SIGTERM to its process group,
// SIGKILL after 20 seconds.
func ServiceProcess(t testing.TB, url, service, bin string, s3 S3, env ...string) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"SLIPWAY_NATS_URL="+url,
		"SLIPWAY_NATS_CREDS="+CredentialsFile(t, url, Principal(service)),
		"SLIPWAY_S3_ENDPOINT="+s3.Endpoint,
		"SLIPWAY_S3_ACCESS_KEY="+s3.AccessKey,
		"SLIPWAY_S3_SECRET_KEY="+s3.SecretKey,
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = Writer{T: t}, Writer{T: t}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	nc := Dial(t, url)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("%s (%s) exited before it answered: %v", service, bin, err)
		default:
		}
		if answers(nc, service) {
			return
		}
	}
	t.Fatalf("%s (%s) did not answer $SRV.PING.%s within 30s", service, bin, service)
}

// answers reports whether the service name answers a NATS micro PING.
func answers(nc *nats.Conn, name string) bool {
	m, err := nc.Request("$SRV.PING."+name, nil, 500*time.Millisecond)
	return err == nil && len(m.Data) > 0
}
