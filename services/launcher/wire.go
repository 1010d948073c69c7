package launcher

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/slipway/slipway/pkg/servicemain"
)

// Wire builds the launcher from its dependencies and the environment
// (ConfigFromEnv): the one wiring its binary, `slipway up` and tests use.
// In a stack, VMs, the blob cache and consoles live beside the rest of the
// stack's data (see stackWorkDir) unless SLIPWAY_LAUNCHER_WORK_DIR says
// otherwise.
func Wire(d servicemain.Deps) (servicemain.Service, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	cfg.Logger = d.ServiceLogger(Name)
	if cfg.WorkDir == "" && d.Stack.DataDir != "" {
		cfg.WorkDir = stackWorkDir(d.Stack.DataDir, cfg.Logger)
	}
	return New(d.Bus, d.Store, cfg), nil
}

// stackWorkDir is dataDir/launcher. As root the launcher runs QEMU as
// unprivileged uids, which must walk through the data directory to their
// VM directories, so others may search it (not list it). When a directory
// above the data directory is closed to them (a checkout under /root), the
// VMs live under /var/lib/slipway instead, in a directory named after the
// data directory, and the log says so.
func stackWorkDir(dataDir string, log *slog.Logger) string {
	dir := filepath.Join(dataDir, "launcher")
	if os.Geteuid() != 0 {
		return dir
	}
	if fi, err := os.Stat(dataDir); err == nil {
		_ = os.Chmod(dataDir, fi.Mode().Perm()|0o001)
	}
	if Reachable(dir) == nil {
		return dir
	}
	sum := sha256.Sum256([]byte(dataDir))
	moved := filepath.Join("/var/lib/slipway", "up-"+hex.EncodeToString(sum[:6]))
	for _, d := range []string{filepath.Dir(moved), moved} {
		if err := os.MkdirAll(d, 0o711); err == nil {
			_ = os.Chmod(d, 0o711)
		}
	}
	log.Info("the data directory is out of reach of QEMU's unprivileged uids: VMs live elsewhere",
		"data_dir", dataDir, "launcher_work_dir", filepath.Join(moved, "launcher"))
	return filepath.Join(moved, "launcher")
}
