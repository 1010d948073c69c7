package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Directories that carry a disk in an image.
const (
	DirKubeVirt  = "disk"       // KubeVirt containerDisk: /disk/<file>
	DirRancherVM = "base_image" // RancherVM: /base_image/<file>
)

// maxDiskLayerEntries bounds the tar headers read from one layer while
// looking for a disk: a disk-only layer has a handful; more means a
// container layer, and the scan stops there.
const maxDiskLayerEntries = 1000

// DiskError is an image that looks like a disk image but does not carry
// exactly one disk file.
type DiskError struct {
	Files []string // the disk files found, "/disk/a.qcow2", …
	Dirs  bool     // whether /disk/ or /base_image/ directories were seen
}

func (e *DiskError) Error() string {
	switch {
	case len(e.Files) == 0 && e.Dirs:
		return "no disk file under /disk/ or /base_image/: the directory is there but empty"
	case len(e.Files) == 0:
		return "no disk file under /disk/ or /base_image/: the image holds only directories"
	}
	return fmt.Sprintf("%d disk files (%s): a disk image must carry exactly one under /disk/ or /base_image/",
		len(e.Files), strings.Join(e.Files, ", "))
}

// diskFound is where the disk file of a disk image is.
type diskFound struct {
	path  string // "/disk/x.qcow2"; "" for a container image
	layer int    // index of the layer holding it
}

// findDisk decides whether layers form a disk image. It reads tar headers
// only, from the last layer back, while layers hold nothing but directories
// and regular files under /disk/ or /base_image/ (the layers below, e.g. a
// RancherVM image's busybox, are a base and ignored). The image is a disk
// image when those trailing layers carry exactly one such file. A layer
// with anything else ends the scan at its first other entry, so a
// container image costs one partial layer read.
func findDisk(layers []v1.Layer) (diskFound, error) {
	files := map[string]int{} // path → layer index of its newest copy
	sawDirs, allScanned := false, true
	for i := len(layers) - 1; i >= 0; i-- {
		sc, err := scanLayer(layers[i])
		if err != nil {
			return diskFound{}, fmt.Errorf("layer %d: %w", i+1, err)
		}
		if sc.other {
			allScanned = false
			break
		}
		sawDirs = sawDirs || sc.diskDirs
		for _, f := range sc.files {
			if _, newer := files[f]; !newer {
				files[f] = i
			}
		}
	}
	switch {
	case len(files) == 1:
		for p, i := range files {
			return diskFound{path: p, layer: i}, nil
		}
	case len(files) > 1:
		return diskFound{}, &DiskError{Files: sortedKeys(files), Dirs: true}
	case sawDirs || (allScanned && len(layers) > 0):
		return diskFound{}, &DiskError{Dirs: sawDirs}
	}
	return diskFound{}, nil
}

// layerScan is what one layer's headers showed.
type layerScan struct {
	files    []string // regular files under /disk/ or /base_image/
	diskDirs bool     // /disk/ or /base_image/ (or directories below) seen
	other    bool     // anything else: a container layer
}

func scanLayer(l v1.Layer) (layerScan, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return layerScan{}, err
	}
	defer rc.Close()
	var sc layerScan
	tr := tar.NewReader(rc)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return sc, nil
		}
		if err != nil {
			return layerScan{}, err
		}
		if n >= maxDiskLayerEntries || !sc.add(h) {
			sc.other = true
			return sc, nil
		}
	}
}

// add classifies one entry; false means it is container content.
func (sc *layerScan) add(h *tar.Header) bool {
	p := cleanEntry(h.Name)
	underDisk := diskDir(p) != ""
	switch {
	case p == "" || p == ".":
		return h.Typeflag == tar.TypeDir
	case strings.HasPrefix(path.Base(p), ".wh."):
		return false // whiteouts change what lies below: not a plain disk layer
	case h.Typeflag == tar.TypeDir:
		sc.diskDirs = sc.diskDirs || underDisk || p == DirKubeVirt || p == DirRancherVM
		return true
	case h.Typeflag == tar.TypeReg && underDisk:
		sc.files = append(sc.files, "/"+p)
		return true
	}
	return false
}

// cleanEntry normalizes a tar entry name: no leading "/" or "./".
func cleanEntry(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// diskDir returns the disk directory p lies under, or "".
func diskDir(p string) string {
	for _, d := range []string{DirKubeVirt, DirRancherVM} {
		if strings.HasPrefix(p, d+"/") {
			return d
		}
	}
	return ""
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
