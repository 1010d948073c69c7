package run

// ChildPath is the PATH a helper process gets: the system's directories,
// never the caller's (which may hold a test's or an operator's own
// directories first).
const ChildPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ChildEnv is the whole environment of a helper process that reads
// untrusted data (qemu-img, mkfs, debugfs, xfs_db, cryptsetup…): the system
// PATH, the C locale and extra ("KEY=value"), and nothing of this process's
// own, so no S3 key, KEK or credential reaches a parser of hostile input.
func ChildEnv(extra ...string) []string {
	return append([]string{ChildPath, "LC_ALL=C"}, extra...)
}
