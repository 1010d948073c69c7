package fsimage

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slipway/slipway/services/builder/tree"
)

// xfsMarker starts the lines the scripts echo between inodes, so output
// can be told apart.
const xfsMarker = "@@fsimage "

// ReadXFS lists the tree of an xfs image with xfs_db, without mounting it:
// paths, types, modes, owners, sizes, symlink targets, device numbers,
// short-form xattrs and mtimes (whole seconds). Names sharing an inode are
// reported as hard links to the first of them in tree order; ReadXFSInodes
// gives the inode numbers and stored link counts.
func ReadXFS(ctx context.Context, image string) (*tree.Tree, error) {
	l, _, err := listXFS(ctx, image)
	if err != nil {
		return nil, err
	}
	return l.tree(), nil
}

// Inode is one inode of an image as ReadXFSInodes lists it.
type Inode struct {
	Ino uint64
	// Nlink is the link count stored in the inode.
	Nlink uint32
	// Names are the paths naming the inode, in tree order.
	Names []string
}

// ReadXFSInodes lists every inode reachable from an xfs image's root with
// its number, stored link count and names, ordered by first name, so tests
// can check hard links against the counts the filesystem keeps.
func ReadXFSInodes(ctx context.Context, image string) ([]Inode, error) {
	l, _, err := listXFS(ctx, image)
	if err != nil {
		return nil, err
	}
	out := make([]Inode, 0, len(l.byIno))
	for _, x := range l.byIno {
		names := slices.Clone(x.names)
		sort.Slice(names, func(i, j int) bool { return tree.Less(names[i], names[j]) })
		out = append(out, Inode{Ino: x.ino, Nlink: x.nlink, Names: names})
	}
	sort.Slice(out, func(i, j int) bool { return tree.Less(out[i].Names[0], out[j].Names[0]) })
	return out, nil
}

// listXFS walks an xfs image's directories breadth first, one xfs_db run
// per level to list them and one to inspect their entries.
func listXFS(ctx context.Context, image string) (*inodeList, xfsGeo, error) {
	geo, err := xfsGeometry(ctx, image)
	if err != nil {
		return nil, geo, err
	}
	l := &inodeList{byIno: map[uint64]*listed{}}
	l.add(geo.rootIno, ".", &tree.Entry{Type: tree.Dir})
	level := map[uint64]string{geo.rootIno: "."}
	if err := inspectXFS(ctx, image, geo, l, level, nil); err != nil {
		return nil, geo, err
	}
	for len(level) > 0 {
		var cmds []string
		for ino := range level {
			cmds = append(cmds, fmt.Sprintf("echo %s%d", xfsMarker, ino), fmt.Sprintf("inode %d", ino), "ls")
		}
		next := map[uint64]string{}
		kinds := map[uint64]string{}
		var dir string
		err := xfsDBScript(ctx, image, false, cmds, func(line string) error {
			if m, ok := strings.CutPrefix(line, xfsMarker); ok {
				ino, err := strconv.ParseUint(strings.TrimSpace(m), 10, 64)
				dir = level[ino]
				return err
			}
			ino, kind, name, ok := parseXFSLs(line)
			if !ok || name == "." || name == ".." {
				return nil
			}
			kinds[ino] = kind
			p := name
			if dir != "." {
				p = dir + "/" + name
			}
			if l.add(ino, p, &tree.Entry{}) {
				next[ino] = p // kept only if it turns out to be a directory
			}
			return nil
		})
		if err != nil {
			return nil, geo, err
		}
		if err := inspectXFS(ctx, image, geo, l, next, kinds); err != nil {
			return nil, geo, err
		}
		level = map[uint64]string{}
		for ino, p := range next {
			if l.byIno[ino].entry.Type == tree.Dir {
				level[ino] = p
			}
		}
	}
	return l, geo, nil
}

// parseXFSLs reads "cookie ino type hash namelen name (good)"; the name is
// exactly namelen bytes, so spaces in it are kept.
func parseXFSLs(line string) (ino uint64, kind, name string, ok bool) {
	rest := line
	var f [5]string
	for i := range f {
		rest = strings.TrimLeft(rest, " \t")
		end := strings.IndexAny(rest, " \t")
		if end < 0 {
			return 0, "", "", false
		}
		f[i], rest = rest[:end], rest[end+1:]
	}
	ino, err1 := strconv.ParseUint(f[1], 10, 64)
	n, err2 := strconv.Atoi(f[4])
	if err1 != nil || err2 != nil || n > len(rest) {
		return 0, "", "", false
	}
	return ino, f[2], rest[:n], true
}

// inspectXFS reads the inodes of one directory level and fills in their
// metadata. kinds, ls's type column, saves printing the data fork of
// files and directories, which can be long.
func inspectXFS(ctx context.Context, image string, geo xfsGeo, l *inodeList, inos map[uint64]string, kinds map[uint64]string) error {
	var cmds []string
	for ino := range inos {
		cmds = append(cmds, fmt.Sprintf("echo %s%d", xfsMarker, ino), fmt.Sprintf("inode %d", ino),
			"print core.mode core.uid core.gid core.size core.format core.nlinkv2 core.mtime.sec")
		if k := kinds[ino]; k != "regular" && k != "directory" {
			cmds = append(cmds, "print u3")
		}
		cmds = append(cmds, "print a")
	}
	var cur *listed
	remote := map[uint64]*tree.Entry{}
	err := xfsDBScript(ctx, image, false, cmds, func(line string) error {
		if m, ok := strings.CutPrefix(line, xfsMarker); ok {
			ino, err := strconv.ParseUint(strings.TrimSpace(m), 10, 64)
			cur = l.byIno[ino]
			return err
		}
		if cur == nil {
			return nil
		}
		return parseXFSField(cur, line, remote)
	})
	if err != nil {
		return err
	}
	for ino, e := range remote {
		var b strings.Builder
		if err := xfsReadExtents(ctx, image, geo, ino, e.Size, 56, &b); err != nil {
			return fmt.Errorf("symlink %q: %w", e.Path, err)
		}
		e.Link = b.String()
	}
	return nil
}

func parseXFSField(x *listed, line string, remote map[uint64]*tree.Entry) error {
	e := x.entry
	key, val, ok := strings.Cut(line, " = ")
	if !ok {
		return nil
	}
	num := func() uint64 {
		v, _, _ := strings.Cut(val, " ")
		n, _ := strconv.ParseUint(v, 0, 64)
		return n
	}
	switch {
	case key == "core.mode":
		mode, err := strconv.ParseUint(val, 8, 32)
		t, ok := typeOf(uint32(mode))
		if err != nil || !ok {
			return fmt.Errorf("xfs_db: inode %d: unknown mode %q", x.ino, val)
		}
		e.Type, e.Mode = t, uint32(mode)&0o7777
	case key == "core.uid":
		e.UID = uint32(num())
	case key == "core.gid":
		e.GID = uint32(num())
	case key == "core.size":
		if e.Type == tree.Regular || e.Type == tree.Symlink {
			e.Size = int64(num())
		}
	case key == "core.format":
		// "2 (extents)"
		_, f, _ := strings.Cut(val, "(")
		x.format = strings.TrimSuffix(f, ")")
		if e.Type == tree.Symlink && x.format != "local" {
			remote[x.ino] = e
		}
	case key == "core.nlinkv2":
		x.nlink = uint32(num())
	case key == "core.mtime.sec":
		t, err := parseXFSTime(val)
		if err != nil {
			return fmt.Errorf("xfs_db: inode %d: %w", x.ino, err)
		}
		e.ModTime = t
	case key == "u3.dev":
		d := num()
		e.Major, e.Minor = uint32(d>>18), uint32(d&(1<<18-1))
	case key == "u3.symlink":
		e.Link = unquoteXFSDB(val)
	case strings.HasPrefix(key, "a.sfattr.list["):
		return parseXFSAttr(e, key, val)
	case strings.HasPrefix(key, "a.bmx") || strings.HasPrefix(key, "a.bmbt"):
		return fmt.Errorf("xfs: xattrs of inode %d are stored in blocks, which this reader does not decode", x.ino)
	}
	return nil
}

// parseXFSAttr collects a.sfattr.list[i].{root,secure,name,value}; the
// namespace flags come before the name and value.
func parseXFSAttr(e *tree.Entry, key, val string) error {
	idx, field, _ := strings.Cut(strings.TrimPrefix(key, "a.sfattr.list["), "].")
	if e.Xattrs == nil {
		e.Xattrs = map[string]string{}
	}
	pending := "\x00pending" + idx
	switch field {
	case "root":
		if val == "1" {
			e.Xattrs[pending] = "trusted."
		}
	case "secure":
		if val == "1" {
			e.Xattrs[pending] = "security."
		}
	case "name":
		ns, ok := e.Xattrs[pending]
		if !ok {
			ns = "user."
		}
		e.Xattrs[pending] = ns + unquoteXFSDB(val)
	case "value":
		name := e.Xattrs[pending]
		delete(e.Xattrs, pending)
		e.Xattrs[name] = unquoteXFSDB(val)
	}
	return nil
}

// unquoteXFSDB decodes xfs_db's string printing: \" and \\, \a..\g for
// bytes 7..13, and \ooo octal for other bytes that do not print.
func unquoteXFSDB(s string) string {
	s = strings.TrimPrefix(strings.TrimSuffix(s, `"`), `"`)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch n := s[i]; {
		case n >= '0' && n <= '7' && i+2 < len(s):
			v, _ := strconv.ParseUint(s[i:i+3], 8, 8)
			b.WriteByte(byte(v))
			i += 2
		case n >= 'a' && n <= 'g':
			b.WriteByte(7 + n - 'a')
		default:
			b.WriteByte(n)
		}
	}
	return b.String()
}

// parseXFSTime reads a timestamp's seconds as xfs_db prints them: a date
// in the C locale and, as run sets TZ, in UTC ("Tue Nov 14 22:13:20
// 2023"); a plain number is taken as it is.
func parseXFSTime(val string) (int64, error) {
	if n, err := strconv.ParseInt(val, 10, 64); err == nil {
		return n, nil
	}
	t, err := time.ParseInLocation("Mon Jan _2 15:04:05 2006", val, time.UTC)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q: %w", val, err)
	}
	return t.Unix(), nil
}

type xfsGeo struct {
	blockSize, agBlocks, rootIno uint64
	// dirBlocks is the size of a directory block in filesystem blocks.
	dirBlocks uint64
}

func xfsGeometry(ctx context.Context, image string) (xfsGeo, error) {
	var g xfsGeo
	err := xfsDBScript(ctx, image, false, []string{"sb 0", "print blocksize agblocks rootino dirblklog"}, func(line string) error {
		k, v, _ := strings.Cut(line, " = ")
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "blocksize":
			g.blockSize = n
		case "agblocks":
			g.agBlocks = n
		case "rootino":
			g.rootIno = n
		case "dirblklog":
			g.dirBlocks = 1 << n
		}
		return nil
	})
	g.dirBlocks = max(g.dirBlocks, 1)
	if err == nil && (g.blockSize == 0 || g.agBlocks == 0 || g.rootIno == 0) {
		err = fmt.Errorf("xfs_db: %s: no superblock geometry", image)
	}
	return g, err
}

type xfsExtent struct{ off, agno, agbno, count uint64 }

// xfsReadExtents writes the first size bytes of inode ino's data to w,
// reading its extents from the image file; holes and unwritten extents
// read as zeros. skip bytes at the start of each block are headers
// (56 for v5 symlink blocks).
func xfsReadExtents(ctx context.Context, image string, geo xfsGeo, ino uint64, size int64, skip uint64, w io.Writer) error {
	var exts []xfsExtent
	err := xfsDBScript(ctx, image, false, []string{fmt.Sprintf("inode %d", ino), "bmap"}, func(line string) error {
		var x xfsExtent
		var flag int
		// data offset 0 startblock 32778 (1/10) count 1 flag 0
		if _, err := fmt.Sscanf(line, "data offset %d startblock %d (%d/%d) count %d flag %d",
			&x.off, new(uint64), &x.agno, &x.agbno, &x.count, &flag); err != nil {
			return nil
		}
		if flag == 0 {
			exts = append(exts, x)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(exts, func(i, j int) bool { return exts[i].off < exts[j].off })
	f, err := os.Open(image)
	if err != nil {
		return err
	}
	defer f.Close()
	per := geo.blockSize - skip
	var done int64 // bytes written
	zeros := func(upTo int64) error {
		_, err := io.CopyN(w, zeroReader{}, min(upTo, size)-done)
		done = max(done, min(upTo, size))
		return err
	}
	for _, x := range exts {
		if err := zeros(int64(x.off * per)); err != nil {
			return err
		}
		for b := range x.count {
			if done >= size {
				return nil
			}
			pos := int64(((x.agno*geo.agBlocks)+x.agbno+b)*geo.blockSize + skip)
			n := min(int64(per), size-done)
			if _, err := io.Copy(w, io.NewSectionReader(f, pos, n)); err != nil {
				return err
			}
			done += n
		}
	}
	return zeros(size)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// xfsCat streams a regular file's content out of an xfs image.
func xfsCat(ctx context.Context, image, p string, w io.Writer) error {
	geo, err := xfsGeometry(ctx, image)
	if err != nil {
		return err
	}
	ino, err := xfsLookup(ctx, image, geo.rootIno, p)
	if err != nil {
		return err
	}
	x := &listed{ino: ino, entry: &tree.Entry{Path: p}}
	err = xfsDBScript(ctx, image, false, []string{fmt.Sprintf("inode %d", ino), "print core.mode core.size"},
		func(line string) error { return parseXFSField(x, line, nil) })
	if err != nil {
		return err
	}
	if x.entry.Type != tree.Regular {
		return fmt.Errorf("xfs: %s is a %s, not a regular file, in %s", abs(p), x.entry.Type, image)
	}
	return xfsReadExtents(ctx, image, geo, ino, x.entry.Size, 0, w)
}

// xfsLookup finds p's inode one directory at a time, matching names
// exactly rather than quoting them for xfs_db's parser.
func xfsLookup(ctx context.Context, image string, ino uint64, p string) (uint64, error) {
	if p == "." {
		return ino, nil
	}
	for _, name := range strings.Split(p, "/") {
		var found uint64
		err := xfsDBScript(ctx, image, false, []string{fmt.Sprintf("inode %d", ino), "ls"}, func(line string) error {
			if n, _, got, ok := parseXFSLs(line); ok && got == name {
				found = n
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if found == 0 {
			return 0, fmt.Errorf("xfs: %s: %q not found", abs(p), name)
		}
		ino = found
	}
	return ino, nil
}

// xfsDBScript runs cmds through one xfs_db (read-only unless write), with
// the commands in a file it sources. Failed commands print messages to
// stdout, so readers check what they get instead.
func xfsDBScript(ctx context.Context, image string, write bool, cmds []string, onLine func(string) error) error {
	script, err := writeScript("fsimage-xfsdb-", cmds)
	if err != nil {
		return err
	}
	defer os.Remove(script)
	mode := "-r"
	if write {
		mode = "-x"
	}
	stderr, err := run(ctx, onLine, "xfs_db", mode, "-f", "-c", "source "+script, image)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(stderr); s != "" {
		return fmt.Errorf("xfs_db: %s", firstLines(s, 8))
	}
	return nil
}
