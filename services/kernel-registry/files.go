package kernelregistry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/services/kernel-registry/deb"
	"github.com/slipway/slipway/services/kernel-registry/kernel"
)

// download streams an s3:// object to a local file.
func download(ctx context.Context, store *blob.Store, url, dst string, progress func(done, total int64)) error {
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	rc, size, err := store.Get(ctx, bucket, key)
	if err != nil {
		return storeErr("read "+url, err)
	}
	defer rc.Close()
	f, err := os.Create(dst)
	if err != nil {
		return &retryable{err}
	}
	var w io.Writer = f
	if progress != nil {
		progress(0, size)
		w = &jobs.Writer{W: f, Total: size, Report: progress}
	}
	n, err := io.Copy(w, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("got %d of %d bytes", n, size)
	}
	if err != nil {
		return storeErr("download "+url, err)
	}
	return nil
}

// putFile uploads a local file and returns its s3:// URL.
func putFile(ctx context.Context, store *blob.Store, bucket, key, file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", &retryable{err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", &retryable{err}
	}
	info, err := store.Put(ctx, bucket, key, f, fi.Size())
	if err != nil {
		return "", storeErr("store "+blob.URL(bucket, key), err)
	}
	return info.URL(), nil
}

// isPackage tells a Debian package by its ar magic.
func isPackage(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 8)
	n, _ := io.ReadFull(f, head)
	return deb.IsPackage(head[:n])
}

// inspectFile examines a kernel file.
func inspectFile(file string) (kernel.Facts, error) {
	f, err := os.Open(file)
	if err != nil {
		return kernel.Facts{}, &retryable{err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return kernel.Facts{}, &retryable{err}
	}
	return kernel.Inspect(f, fi.Size())
}

// extractVmlinux writes a bzImage's vmlinux to dst and examines it.
func extractVmlinux(bz string, size int64, dst string) (kernel.Facts, error) {
	in, err := os.Open(bz)
	if err != nil {
		return kernel.Facts{}, &retryable{err}
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return kernel.Facts{}, &retryable{err}
	}
	_, err = kernel.ExtractVmlinux(in, size, out)
	if cerr := out.Close(); err == nil && cerr != nil {
		return kernel.Facts{}, &retryable{cerr}
	}
	if err != nil {
		return kernel.Facts{}, fmt.Errorf("extract the vmlinux: %w", err)
	}
	vf, err := inspectFile(dst)
	if err != nil {
		return vf, fmt.Errorf("the bzImage's vmlinux: %w", err)
	}
	return vf, nil
}

func fileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", &retryable{err}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", &retryable{err}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
