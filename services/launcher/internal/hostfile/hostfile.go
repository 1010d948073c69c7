// Package hostfile checks the host files a hypervisor is handed (disks,
// kernels, initrds) before its command line names them, so that a wrong
// path fails with a plain error instead of inside QEMU or Firecracker.
package hostfile

import (
	"fmt"
	"os"
)

// Regular refuses p unless it is a regular file (a link to one counts).
func Regular(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	return nil
}
