package catalog

import (
	"context"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// benchBlobSize is about the qcow2 a 200 MiB rootfs import stores.
const benchBlobSize = 200 << 20

// BenchmarkCommitVerify times the commit's check of a 200 MiB blob both
// ways in the same run: by the report's S3 checksum (one HEAD) and by
// reading the blob back (the report without one, as before). It reports
// each one's time and the ratio read/checksum.
func BenchmarkCommitVerify(b *testing.B) {
	ctx := context.Background()
	bucket := "bench-" + testenv.Unique()
	blobs := s3.Store(b, ctx, bucket)
	info, err := blobs.Put(ctx, bucket, "disk.qcow2", io.LimitReader(rand.NewChaCha8([32]byte{7}), benchBlobSize), benchBlobSize)
	if err != nil {
		b.Fatal(err)
	}
	s := &Service{blobs: blobs, cfg: Config{VerifyDigest: true}}
	report := schemas.ConverterConverted{Dest: info.URL(), Size: info.Size, SHA256: info.SHA256, S3Checksum: info.S3Checksum}
	older := report
	older.S3Checksum = ""
	var byChecksum, byRead time.Duration
	for b.Loop() {
		byChecksum += timeVerify(b, s, report)
		byRead += timeVerify(b, s, older)
	}
	n := float64(b.N)
	b.ReportMetric(byChecksum.Seconds()/n, "checksum-s")
	b.ReportMetric(byRead.Seconds()/n, "read-s")
	b.ReportMetric(byRead.Seconds()/byChecksum.Seconds(), "read/checksum")
	b.Logf("commit check of a %d MiB blob: by S3 checksum %v, by reading it back %v (ratio %.0f)",
		benchBlobSize>>20, byChecksum/time.Duration(b.N), byRead/time.Duration(b.N), byRead.Seconds()/byChecksum.Seconds())
}

func timeVerify(b *testing.B, s *Service, report schemas.ConverterConverted) time.Duration {
	b.Helper()
	start := time.Now()
	reason, err := s.verifyBlob(context.Background(), "the builder", report)
	if err != nil || reason != "" {
		b.Fatalf("verify: %q %v", reason, err)
	}
	return time.Since(start)
}
