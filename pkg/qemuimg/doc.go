// Package qemuimg is Slipway's one way of running qemu-img on disks it did
// not write itself: the converter (info, check, measure, convert, create on
// images it has inspected), crypto-luks (LUKS encryption and key slots) and
// the launcher (overlays, save-as copies, offline snapshots, sizes at
// EPILOG) all run qemu-img through a Runner.
//
// Every qemu-img process runs under prlimit (util-linux) with CPU-time and
// address-space limits (Limits; Runner.Light for header reads, Runner.Heavy
// for whole-image work), at a lower nice priority, with run.ChildEnv as its
// whole environment, and in its own process group, which a cancelled context
// kills as a whole. stderr is captured and included, trimmed, in errors,
// which name the limit a killed qemu-img hit. Runner.Command, Run and Stream
// give other packages that confinement for their own qemu-img arguments.
//
// The calls of this package pass explicit formats (-f/-O; --image-opts is
// never used with user strings, and no user string ever reaches an -o
// option) and accept only absolute local paths (CheckPath: never "json:" or
// another "proto:" filename, which would make qemu open something else);
// callers of Command, Run and Stream are expected to do the same.
//
// Info double-checks what inspect decided: the format qemu sees must be the
// one asked for, and its JSON must show no backing file and no data file.
package qemuimg
