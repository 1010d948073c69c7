// Package qemuimg runs qemu-img on inputs that package inspect has already
// checked, with a second line of defence around it.
//
// Every call passes explicit formats (-f/-O; --image-opts is never used with
// user strings, and no user string ever reaches an -o option), accepts only
// absolute local paths (never "json:" or another "proto:" filename, which
// would make qemu open something else), and runs qemu-img under prlimit
// (util-linux) with CPU-time and address-space limits and at a lower nice
// priority. qemu-img runs in its own process group, which a cancelled context
// kills as a whole. stderr is captured and included, trimmed, in errors.
//
// Info double-checks what inspect decided: the format qemu sees must be the
// one asked for, and its JSON must show no backing file and no data file.
package qemuimg
