package guestinit

import (
	"fmt"
	"io"
	"os"
)

// newcWriter streams a "newc" cpio archive, the initramfs format.
type newcWriter struct {
	w   io.Writer
	ino uint32
	off int64
}

type cpioEntry struct {
	name         string // relative, no leading slash
	mode         uint32 // type and permission bits
	size         int64
	major, minor uint32 // a device's numbers
}

// Mode type bits of cpio entries.
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioChar    = 0o020000
)

func (c *newcWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	return err
}

func (c *newcWriter) pad() error {
	if r := c.off % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

func (c *newcWriter) header(e cpioEntry) error {
	c.ino++
	nlink := 1
	if e.mode&0o170000 == cpioDir {
		nlink = 2
	}
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, e.mode, 0, 0, nlink, 0, e.size, 0, 0, e.major, e.minor, len(e.name)+1, 0)
	if err := c.write([]byte(h + e.name + "\x00")); err != nil {
		return err
	}
	return c.pad()
}

// entry writes a header and its content, streamed from r.
func (c *newcWriter) entry(e cpioEntry, r io.Reader) error {
	if err := c.header(e); err != nil {
		return err
	}
	if r != nil {
		n, err := io.Copy(writerFunc(c.write), io.LimitReader(r, e.size))
		if err != nil {
			return err
		}
		if n != e.size {
			return fmt.Errorf("cpio %s: %d bytes, header says %d", e.name, n, e.size)
		}
	}
	return c.pad()
}

func (c *newcWriter) dir(name string) error {
	return c.entry(cpioEntry{name: name, mode: cpioDir | 0o755}, nil)
}

func (c *newcWriter) symlink(name, target string) error {
	return c.entry(cpioEntry{name: name, mode: cpioSymlink | 0o777, size: int64(len(target))}, stringReader(target))
}

func (c *newcWriter) file(name, src string, perm uint32) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return c.entry(cpioEntry{name: name, mode: cpioFile | perm, size: fi.Size()}, f)
}

func (c *newcWriter) data(name, content string, perm uint32) error {
	return c.entry(cpioEntry{name: name, mode: cpioFile | perm, size: int64(len(content))}, stringReader(content))
}

func (c *newcWriter) close() error {
	return c.entry(cpioEntry{name: "TRAILER!!!"}, nil)
}

type writerFunc func([]byte) error

func (f writerFunc) Write(b []byte) (int, error) {
	if err := f(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

type stringReaderT struct{ s string }

func stringReader(s string) io.Reader { return &stringReaderT{s} }

func (r *stringReaderT) Read(b []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(b, r.s)
	r.s = r.s[n:]
	return n, nil
}
