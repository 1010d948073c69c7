package kernel

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// MaxConfig bounds the configuration text ConfigText returns (a distribution
// kernel's is about 250 KiB).
const MaxConfig = 8 << 20

// ErrNoConfig: the kernel does not embed its configuration.
var ErrNoConfig = errors.New("the kernel does not embed its configuration (CONFIG_IKCONFIG)")

// ConfigText returns the configuration embedded in the ELF kernel r, as
// Inspect located it (f.Config): the gzip'd text between IKCFG_ST and
// IKCFG_ED.
func ConfigText(r io.ReaderAt, f Facts) ([]byte, error) {
	if !f.Config {
		return nil, ErrNoConfig
	}
	zr, err := gzip.NewReader(io.NewSectionReader(r, f.ConfigOffset, f.ConfigLength))
	if err != nil {
		return nil, fmt.Errorf("embedded configuration: %w", err)
	}
	defer zr.Close()
	text, err := io.ReadAll(io.LimitReader(zr, MaxConfig+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("embedded configuration: %w", err)
	case len(text) > MaxConfig:
		return nil, fmt.Errorf("embedded configuration: larger than %d MiB", MaxConfig>>20)
	}
	return text, nil
}
