package httpmarket

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/slipway/slipway/services/market-lxc/published"
)

// Monitor reports the marketplace's USED_MB, FREE_MB and TOTAL_MB. With a
// configured TOTAL_MB, used is what the published files take and free the
// rest of the quota; without, the three come from the file system holding
// PUBLIC_DIR, as df reports them.
func (p *Publisher) Monitor() (published.Usage, error) {
	if p.totalMB > 0 {
		used, err := p.usedBytes()
		if err != nil {
			return published.Usage{}, err
		}
		return published.QuotaUsage(used, p.totalMB), nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(p.dir, &st); err != nil {
		return published.Usage{}, fmt.Errorf("monitor %s: %w", p.dir, err)
	}
	bs := int64(st.Bsize)
	return published.Usage{
		TotalMB: int64(st.Blocks) * bs >> 20,
		UsedMB:  int64(st.Blocks-st.Bfree) * bs >> 20,
		FreeMB:  int64(st.Bavail) * bs >> 20,
	}, nil
}

// usedBytes adds up the sizes of the files below PUBLIC_DIR.
func (p *Publisher) usedBytes() (int64, error) {
	var total int64
	err := filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while walking
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		total += fi.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("monitor %s: %w", p.dir, err)
	}
	return total, nil
}
