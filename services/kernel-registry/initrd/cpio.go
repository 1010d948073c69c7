package initrd

import (
	"fmt"
	"io"
	"io/fs"
	"syscall"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks into its
// rootfs (Documentation/driver-api/early-userspace/buffer-format.rst).
type cpioWriter struct {
	w   io.Writer
	n   int64
	ino uint32
}

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return err
}

// pad writes NULs up to the next multiple of 4 of the archive's length.
func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

// header writes one entry's header and name; mode holds the file type
// bits as stat(2) has them.
func (c *cpioWriter) header(name string, mode uint32, size int64, rdevMajor, rdevMinor uint32) error {
	if size > 0xffffffff {
		return fmt.Errorf("cpio: %s: %d bytes is too large for newc", name, size)
	}
	c.ino++
	nlink := uint32(1)
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	if err := c.write([]byte(h)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	return c.pad()
}

// dir adds a directory.
func (c *cpioWriter) dir(name string, perm fs.FileMode) error {
	return c.header(name, syscall.S_IFDIR|uint32(perm.Perm()), 0, 0, 0)
}

// charDev adds a character device node.
func (c *cpioWriter) charDev(name string, perm fs.FileMode, major, minor uint32) error {
	return c.header(name, syscall.S_IFCHR|uint32(perm.Perm()), 0, major, minor)
}

// file adds a regular file of size bytes read from r.
func (c *cpioWriter) file(name string, perm fs.FileMode, size int64, r io.Reader) error {
	if err := c.header(name, syscall.S_IFREG|uint32(perm.Perm()), size, 0, 0); err != nil {
		return err
	}
	n, err := io.Copy(writerFunc(c.write), io.LimitReader(r, size))
	if err != nil {
		return fmt.Errorf("cpio: %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("cpio: %s: %d of %d bytes", name, n, size)
	}
	return c.pad()
}

// close writes the trailer.
func (c *cpioWriter) close() error { return c.header("TRAILER!!!", 0, 0, 0, 0) }

type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
