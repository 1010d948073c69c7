// Package ext4 lays out an ext4 filesystem in memory, without mkfs, loop
// devices or root, for a flattened container filesystem: a *tree.Tree of
// metadata and a directory holding the regular files' bytes. The image is
// virtual: its metadata blocks are built here and kept (only the non-zero
// ones), its file-data blocks are read from the files under the directory
// when the image is read (ReadAt), so no file byte is copied to make it.
//
// On-disk layout (4 KiB blocks, 32768 blocks and up to 32768 inodes per
// group, 256-byte inodes):
//
//   - Block 0 holds the superblock at byte 1024. Groups 0, 1 and the powers
//     of 3, 5 and 7 (sparse_super) start with a superblock copy and the
//     group descriptor table (32-byte descriptors; no reserved GDT blocks,
//     so no online resize inode).
//   - flex_bg, 16 groups a flex group: the block bitmaps, then the inode
//     bitmaps, then the inode tables of a flex group's groups sit together
//     in its first group, right after the superblock copy if that group has
//     one. Every other block of a group is data, so files stay contiguous
//     across groups but for the superblock copies.
//   - Allocation is one cursor from the end of group 0's metadata: first
//     the directories' blocks, slow symlinks' blocks and xattr blocks, in
//     tree order; then the journal (inode 8, contiguous but for superblock
//     copies, a clean jbd2 v2 superblock in its first block and zeros
//     after); then each regular file's data, then the extent blocks that
//     map it. The bitmaps follow from that: a block is in use when it is
//     group metadata or below the cursor.
//   - Inodes are numbered in tree order from 12 (1–10 reserved as mke2fs
//     makes them, 2 the root, 11 lost+found with 4 blocks), so a group's
//     used inodes are a prefix of its table.
//   - Regular files, directories, the journal and slow symlinks map their
//     blocks with extents (at most 32768 blocks each): up to 4 in the
//     inode, else a tree of 340-entry blocks. Holes of a sparse file on the
//     host (SEEK_DATA) stay holes. Directories are linear (dir_index is on,
//     with a hash seed, but no directory is indexed). Symlinks under 60
//     bytes live in i_block. Device numbers use the old encoding when both
//     fit in a byte, else the new one in i_block[1].
//   - xattrs go in the inode's extra space when they all fit there (88
//     bytes of entries and values), else all in one xattr block, with
//     entry and block hashes as e2fsprogs computes them; POSIX ACLs
//     (system.posix_acl_access and _default, in the kernel's xattr form)
//     are stored in ext4's on-disk ACL form, as debugfs's ea_set does.
//   - Times: mtime from the tree, atime equal to it, ctime and crtime (and
//     the filesystem's mkfs, write and check times) from Options.Now; all
//     with the extra epoch bits, so mtimes from 1901 to 2446 hold.
//   - metadata_csum: crc32c checksums on the superblock, descriptors,
//     bitmaps, inodes, extent blocks, directory blocks (a 12-byte tail
//     entry in each) and xattr blocks.
//
// Memory grows with the number of entries (inode records, directory,
// extent and xattr blocks), never with the image's or the files' sizes:
// bitmaps, descriptors and superblock copies are generated when read.
package ext4
