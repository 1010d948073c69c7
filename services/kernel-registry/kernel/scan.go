package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Marks looked for in a vmlinux. The banner is linux_banner in
// init/version.c; IKCFG_ST and IKCFG_ED bracket the gzip'd configuration
// (kernel/configs.c).
var (
	bannerMark    = []byte("Linux version ")
	configStart   = []byte("IKCFG_ST")
	configEnd     = []byte("IKCFG_ED")
	maxBannerSize = 512
)

const (
	scanChunk   = 1 << 20
	scanOverlap = 1024 // > len(bannerMark) + maxBannerSize: a match that starts in a chunk ends in its window
)

// found is what one pass over a vmlinux saw.
type found struct {
	banner               string
	configOff, configLen int64
}

// scan reads the file once, a window at a time, for the version banner and
// the embedded configuration.
func scan(r io.ReaderAt, size int64) (found, error) {
	var out found
	buf := make([]byte, scanChunk+scanOverlap)
	cfgStart := int64(-1)
	for off := int64(0); off < size; off += scanChunk {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return out, fmt.Errorf("read the kernel at byte %d: %w", off, err)
		}
		w := buf[:n]
		limit := min(n, scanChunk) // matches starting past it are the next window's
		if out.banner == "" {
			out.banner = findBanner(w, limit)
		}
		if cfgStart < 0 {
			if i := indexBefore(w, configStart, limit); i >= 0 {
				cfgStart = off + int64(i) + int64(len(configStart))
			}
		}
		if cfgStart >= 0 && out.configLen == 0 {
			from := max(0, cfgStart-off)
			if from < int64(n) {
				if i := indexBefore(w[from:], configEnd, limit-int(from)); i >= 0 {
					out.configOff, out.configLen = cfgStart, off+from+int64(i)-cfgStart
				}
			}
		}
		if out.banner != "" && (out.configLen > 0) {
			break
		}
	}
	return out, nil
}

// indexBefore is the first index of sep in w that starts before limit, or -1.
func indexBefore(w, sep []byte, limit int) int {
	if limit <= 0 {
		return -1
	}
	i := bytes.Index(w, sep)
	if i >= limit {
		return -1
	}
	return i
}

// findBanner returns the first "Linux version <digit>…" string starting
// before limit, up to its NUL or newline.
func findBanner(w []byte, limit int) string {
	for from := 0; from < limit; {
		i := indexBefore(w[from:], bannerMark, limit-from)
		if i < 0 {
			return ""
		}
		start := from + i
		rest := w[start+len(bannerMark):]
		if len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
			end := bytes.IndexAny(rest[:min(len(rest), maxBannerSize)], "\x00\n")
			if end < 0 {
				end = min(len(rest), maxBannerSize)
			}
			return string(w[start : start+len(bannerMark)+end])
		}
		from = start + 1
	}
	return ""
}
