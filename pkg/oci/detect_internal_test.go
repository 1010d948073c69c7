package oci

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// countingLayer is an uncompressed layer generated on the fly, counting the
// bytes the scan reads.
func countingLayer(t *testing.T, write func(*tar.Writer) error) (v1.Layer, *int64) {
	t.Helper()
	var read int64
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			err := write(tw)
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		return &countingReader{ReadCloser: pr, n: &read}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, &read
}

type countingReader struct {
	io.ReadCloser
	n *int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	*c.n += int64(n)
	return n, err
}

// zeros streams n zero bytes without holding them.
func zeros(n int64) io.Reader { return io.LimitReader(zeroReader{}, n) }

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func TestScanStopsAtFirstContainerEntry(t *testing.T) {
	const big = 64 << 20
	l, read := countingLayer(t, func(tw *tar.Writer) error {
		if err := tw.WriteHeader(&tar.Header{Name: "etc/os-release", Typeflag: tar.TypeReg, Size: 5, Mode: 0o644}); err != nil {
			return err
		}
		tw.Write([]byte("ID=x\n"))
		if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: big, Mode: 0o644}); err != nil {
			return err
		}
		_, err := io.Copy(tw, zeros(big))
		return err
	})
	*read = 0 // tarball.LayerFromOpener read it all to hash it
	found, err := findDisk([]v1.Layer{l})
	if err != nil || found.path != "" {
		t.Fatalf("%+v %v", found, err)
	}
	if *read > 1<<20 {
		t.Fatalf("read %d bytes of a %d-byte layer to classify it", *read, big)
	}
}

func TestScanEntryBound(t *testing.T) {
	l, _ := countingLayer(t, func(tw *tar.Writer) error {
		for i := range maxDiskLayerEntries + 5 {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("disk/d%d/", i), Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return err
			}
		}
		return nil
	})
	sc, err := scanLayer(l)
	if err != nil || !sc.other {
		t.Fatalf("a layer of %d entries was taken for a disk layer: %+v %v", maxDiskLayerEntries+5, sc, err)
	}
}

func TestScanBadTar(t *testing.T) {
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader([]byte(strings.Repeat("x", 1024)))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := findDisk([]v1.Layer{l}); err == nil || !strings.Contains(err.Error(), "layer 1: ") {
		t.Fatalf("garbage layer: %v", err)
	}
}
