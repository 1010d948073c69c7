package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// Disks with internal qcow2 snapshots whose states a test can tell apart,
// for the snapshot operations (converter, integration).

// PatternSnapshots writes 'a' over the first 64 KiB of the qcow2 at path
// and takes snapshot "sa", then 'b' and "sb", then writes 'c' as the
// current state (qemu-io and qemu-img).
func PatternSnapshots(t testing.TB, path string) {
	t.Helper()
	for _, s := range []struct{ pattern, name string }{{"0x61", "sa"}, {"0x62", "sb"}, {"0x63", ""}} {
		Exec(t, "qemu-io", "-f", "qcow2", "-c", "write -P "+s.pattern+" 0 64k", path)
		if s.name != "" {
			Exec(t, "qemu-img", "snapshot", "-c", s.name, path)
		}
	}
}

// PatternState says which of 'a', 'b' and 'c' the first 64 KiB of the
// qcow2 at path hold now ("?" for none).
func PatternState(t testing.TB, path string) string {
	t.Helper()
	for _, c := range "abc" {
		out, err := ToolCommand("qemu-io", "-f", "qcow2", "-r", "-c", fmt.Sprintf("read -P 0x%02x 0 64k", c), path).CombinedOutput()
		if err == nil && !strings.Contains(string(out), "Pattern verification failed") {
			return string(c)
		}
	}
	return "?"
}
