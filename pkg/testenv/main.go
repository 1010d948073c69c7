package testenv

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
)

// RunWithMinIO runs a package's tests with one MinIO they share: it is
// started in a fresh directory, stored in *s3 before m.Run, and stopped and
// removed after. A MinIO that cannot start fails the package, naming pkg,
// and returns 1. Use it from TestMain (os.Exit(testenv.RunWithMinIO(…))).
func RunWithMinIO(m *testing.M, pkg string, s3 *S3) int {
	dir, err := os.MkdirTemp("", pkg+"-minio-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	started, stop, err := StartMinIO(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s tests need MinIO: %v\n", pkg, err)
		return 1
	}
	defer stop()
	*s3 = started
	return m.Run()
}

var uniqueSeq atomic.Int64

// Unique returns a suffix no other call in this process returns, with the
// process ID, to keep the buckets of tests sharing one MinIO apart.
func Unique() string {
	return fmt.Sprintf("%d-%d", os.Getpid(), uniqueSeq.Add(1))
}
