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
// protofile cannot say: sticky bits and xattrs. xfs_repair -n checks the
// result. Limitations of xfs (xfsprogs 6.1, Debian 12):
//   - The protofile has no hard links: each link becomes its own inode with
//     the same content (and counts twice towards the size).
//   - Names holding spaces, tabs or a leading colon, and names equal to "$",
//     cannot be written in a protofile; such trees are refused.
//   - Timestamps are mkfs's own time, not the tree's mtimes.
//   - xattrs are set with xfs_db in expert mode and must fit in the inode
//     (short form, about 300 bytes per file); larger sets are refused.
//   - xfs cannot be smaller than 300 MiB.
//   - mkfs.xfs reads each regular file whole into memory while copying it.
//
// ReadExt and ReadXFS list a built image's tree with debugfs and xfs_db
// (no mounts) for tests and checks; ContentHash hashes one file's content.
package fsimage
