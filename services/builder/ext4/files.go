package ext4

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// fileRef is a regular file whose bytes the image reads from the
// directory: its path under the root and the size the tree gives it.
type fileRef struct {
	path string
	size int64
}

// openChecked opens a regular file under root and makes sure it still is
// a regular file of the size the tree says.
func openChecked(root *os.Root, f fileRef) (*os.File, error) {
	file, err := root.Open(f.path)
	if err != nil {
		return nil, err
	}
	info, err := file.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("%q is no longer a regular file", f.path)
	}
	if err == nil && info.Size() != f.size {
		err = fmt.Errorf("%q holds %d bytes, the tree says %d: it changed after the tree was made", f.path, info.Size(), f.size)
	}
	if err != nil {
		file.Close()
		return nil, err
	}
	return file, nil
}

// fileSegments lists the block runs of the file name in dir that hold
// data: the host's holes (SEEK_DATA, SEEK_HOLE) stay holes in the image.
// A file whose allocated blocks cover its size, or a filesystem that
// cannot say, is one run. The file must be a regular file (not a symlink)
// of the tree's size.
func fileSegments(dir *os.File, name string, f fileRef) ([]span, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, fmt.Errorf("%q: %w", f.path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Errorf("%q is not a regular file in the directory", f.path)
	case st.Size != f.size:
		return nil, fmt.Errorf("%q holds %d bytes, the tree says %d: it changed after the tree was made", f.path, st.Size, f.size)
	}
	blocks := (f.size + BlockSize - 1) / BlockSize
	if blocks == 0 {
		return nil, nil
	}
	if st.Blocks*512 >= blocks*BlockSize {
		return []span{{0, blocks}}, nil
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", f.path, err)
	}
	defer unix.Close(fd)
	return dataRuns(fd, f.size), nil
}

// dataRuns finds the data runs of the open file fd of size bytes.
func dataRuns(fd int, size int64) []span {
	blocks := (size + BlockSize - 1) / BlockSize
	var out []span
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return []span{{0, blocks}} // no SEEK_DATA here: all data
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return []span{{0, blocks}}
		}
		hole = min(hole, size)
		s := span{data / BlockSize, (hole+BlockSize-1)/BlockSize - data/BlockSize}
		if n := len(out); n > 0 && out[n-1].end() >= s.start {
			out[n-1].count = max(out[n-1].end(), s.end()) - out[n-1].start
		} else if s.count > 0 {
			out = append(out, s)
		}
		off = hole
	}
	return out
}

// fileCache keeps recently read files open for ReadAt; files in use are
// never closed under their readers.
type fileCache struct {
	root  *os.Root
	files []fileRef
	mu    sync.Mutex
	open  map[int]*cachedFile
	tick  uint64
	limit int
}

type cachedFile struct {
	f       *os.File
	refs    int
	lastUse uint64
}

func newFileCache(root *os.Root, files []fileRef) *fileCache {
	return &fileCache{root: root, files: files, open: map[int]*cachedFile{}, limit: 64}
}

// acquire returns file i open; release must follow.
func (c *fileCache) acquire(i int) (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	if cf, ok := c.open[i]; ok {
		cf.refs++
		cf.lastUse = c.tick
		return cf.f, nil
	}
	f, err := openChecked(c.root, c.files[i])
	if err != nil {
		return nil, err
	}
	c.evict()
	c.open[i] = &cachedFile{f: f, refs: 1, lastUse: c.tick}
	return f, nil
}

func (c *fileCache) release(i int) {
	c.mu.Lock()
	c.open[i].refs--
	c.mu.Unlock()
}

// evict closes the least recently used idle file when the cache is full.
func (c *fileCache) evict() {
	if len(c.open) < c.limit {
		return
	}
	victim, oldest := -1, ^uint64(0)
	for i, cf := range c.open {
		if cf.refs == 0 && cf.lastUse < oldest {
			victim, oldest = i, cf.lastUse
		}
	}
	if victim >= 0 {
		c.open[victim].f.Close()
		delete(c.open, victim)
	}
}

// readFile reads p from file i at off; the file must hold every byte of
// p that is below its size: a file that shrank is an error, not zeros.
func (c *fileCache) readFile(i int, p []byte, off int64) error {
	f, err := c.acquire(i)
	if err != nil {
		return err
	}
	defer c.release(i)
	want := min(int64(len(p)), max(c.files[i].size-off, 0))
	n, err := f.ReadAt(p[:want], off)
	if int64(n) < want {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%q ended at %d bytes, the tree says %d: it shrank", c.files[i].path, off+int64(n), c.files[i].size)
		}
		return err
	}
	clear(p[want:])
	return nil
}

func (c *fileCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for i, cf := range c.open {
		if err := cf.f.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.open, i)
	}
	return first
}
