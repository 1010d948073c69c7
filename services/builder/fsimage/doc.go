// Package fsimage builds ext2, ext3, ext4 and xfs filesystem images from a
// flattened container filesystem without loop mounts, mount(2) or root.
//
// The input is a pair: a plain directory holding the file contents (written
// by an unprivileged user, so owners, setuid bits, device nodes, fifos and
// most xattrs are missing from it) and a *tree.Tree holding the real
// metadata. The directory supplies the bytes; the tree is the authority for
// everything else.
//
// ext2/3/4: mke2fs -d copies the directory (regular files, directories,
// symlinks, hard links, xattrs present on disk) into the image, then one
// debugfs -w run applies the tree: owners, full modes, mtimes, device nodes,
// fifos and xattrs. e2fsck -fn checks the result.
//
// xfs: mkfs.xfs -p with a protofile carries owners, modes (setuid, setgid),
// symlinks, devices and fifos; then one xfs_db -x run applies what the
// protofile cannot say: hard links, sticky bits, mtimes and xattrs.
// xfs_repair -n checks the result, and the image is read back and compared
// with the tree. Hard links (xfslink.go): the protofile gives each extra
// name an empty stand-in inode; xfs_db points the name's directory entry at
// the real inode (only the entry's inode number changes, so this holds for
// short-form, block, leaf and node directories alike), marks the stand-in
// free and sets the link count; xfs_repair then frees the stand-ins in the
// inode btrees and counters, and must report nothing else. Limitations
// (xfsprogs 6.1, Debian 12):
//   - Names holding spaces, tabs or a leading colon, and names equal to "$",
//     cannot be written in a protofile; such trees are refused.
//   - mtimes are whole seconds from 1901-12-13 to 2194-03-23 (bigtime as
//     xfs_db 6.1 writes it); others are refused. The other timestamps are
//     what mkfs.xfs writes.
//   - xattrs are set with xfs_db in expert mode and must fit in the inode
//     (short form, about 200 bytes per file); larger sets are refused.
//   - xfs cannot be smaller than 300 MiB.
//   - mkfs.xfs reads each regular file whole into memory while copying it.
//
// LayoutExt4 makes ext4 without the tools: the same checks and size as
// Build, then package ext4 lays the filesystem out in memory and the
// caller reads it (ReadAt, DataRanges), its file data straight from the
// directory; nothing is copied.
//
// ReadExt and ReadXFS list a built image's tree with debugfs and xfs_db
// (no mounts) for tests and checks, ReadXFSInodes an xfs image's inode
// numbers and link counts; ContentHash hashes one file's content.
package fsimage
