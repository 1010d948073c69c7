package fsimage

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
)

// bigDirs are directories sized to be stored in each xfs directory format
// (4 KiB directory blocks): one data block, one leaf block, and a node
// directory with enough extents for a btree data fork.
var bigDirs = []struct {
	dir, format string
	entries     int
}{
	{"many/block", "block", 20},
	{"many/leaf", "leaf", 300},
	{"many/node", "node", 5000},
}

// linkTree is a tree of hard links: within a directory and across
// directories, to a setuid file, to a file with xattrs, to a device node
// and a fifo, names that sort before their target, and link names in
// directories of every xfs format. Every entry has its own mtime.
func linkTree(t *testing.T) *fixture {
	f := newFixture(t)
	for _, d := range []string{"bin", "usr", "usr/bin", "usr/sbin", "etc", "dev", "run", "srv", "many"} {
		f.Dir(d, 0o755, 0, 0)
	}
	f.File("usr/bin/sudo", []byte("#!/bin/sh\necho setuid\n"), 0o4755, 0, 0)
	f.Hardlink("usr/bin/sudoedit", "usr/bin/sudo")
	f.Hardlink("bin/sudo", "usr/bin/sudo")
	ping := f.File("usr/bin/ping", []byte("ping binary"), 0o755, 0, 0)
	ping.Xattrs = map[string]string{"security.capability": capability, "user.note": "linked"}
	f.Hardlink("usr/sbin/ping", "usr/bin/ping")
	f.File("srv/data", randomBytes(1<<20, 7), 0o640, 1000, 1000)
	f.Hardlink("srv/data.1", "srv/data")
	f.Hardlink("srv/data.2", "srv/data")
	f.File("etc/z-target", []byte("target\n"), 0o600, 1000, 1000)
	f.Hardlink("bin/a-link", "etc/z-target")
	f.Special("dev/null", tree.CharDevice, 0o666, 1, 3)
	f.Put(&tree.Entry{Path: "dev/null2", Type: tree.Hardlink, Link: "dev/null"})
	f.Put(&tree.Entry{Path: "run/null", Type: tree.Hardlink, Link: "dev/null"})
	f.Special("run/fifo", tree.FIFO, 0o620, 0, 0)
	f.Put(&tree.Entry{Path: "etc/fifo", Type: tree.Hardlink, Link: "run/fifo"})
	f.Symlink("bin/sh", "/usr/bin/busybox")
	f.File("etc/latest", []byte("late"), 0o644, 0, 0).ModTime = xfsMaxTime
	f.File("etc/earliest", []byte("early"), 0o644, 0, 0).ModTime = xfsMinTime
	f.File("etc/y2100", []byte("2100"), 0o644, 0, 0).ModTime = 4102444800
	for _, b := range bigDirs {
		f.Dir(b.dir, 0o755, 0, 0)
		for i := range b.entries {
			f.File(fmt.Sprintf("%s/entry-with-a-longish-name-%04d", b.dir, i), nil, 0o644, 0, 0)
		}
		// Link names at the start, the middle and the end of the
		// directory, so in its first, middle and last data blocks.
		f.Hardlink(b.dir+"/aaa-sudo", "usr/bin/sudo")
		f.Hardlink(fmt.Sprintf("%s/entry-with-a-longish-name-%04d-ping", b.dir, b.entries/2), "usr/bin/ping")
		f.Hardlink(b.dir+"/zzz-data", "srv/data")
		f.Put(&tree.Entry{Path: b.dir + "/zzz-null", Type: tree.Hardlink, Link: "dev/null"})
	}
	return f
}

func TestXFSHardLinksAndMtimes(t *testing.T) {
	ctx := context.Background()
	f := linkTree(t)
	image := filepath.Join(t.TempDir(), "links.img")
	if _, err := Build(ctx, f.Root, f.Tree, image, Options{Filesystem: "xfs"}); err != nil {
		t.Fatal(err)
	}
	check(t, "xfs", image)
	got := readBack(ctx, t, image, "xfs")
	for _, d := range Diff(f.Tree, got, "xfs") {
		t.Error(d)
	}
	checkDirFormats(ctx, t, image)
	checkLinkGroups(ctx, t, f.Tree, image)
	for p, want := range map[string]string{
		"usr/bin/sudo": "file 04755 0:0", "usr/bin/ping": "file 0755 0:0 size 11",
		"dev/null": "char 0666 0:0 1:3", "run/fifo": "fifo 0620 0:0", "srv/data": "file 0640 1000:1000",
	} {
		e, ok := got.Get(p)
		if !ok {
			t.Errorf("%s: missing", p)
			continue
		}
		if s := describe(resolve(got, e)); s != want {
			t.Errorf("%s: %s, want %s", p, s, want)
		}
	}
	if e, _ := got.Get("usr/sbin/ping"); e == nil || resolve(got, e).Xattrs["security.capability"] != capability {
		t.Errorf("usr/sbin/ping: the capability is not on the linked inode")
	}
	for p, want := range map[string]int64{"etc/latest": xfsMaxTime, "etc/earliest": xfsMinTime, "etc/y2100": 4102444800, ".": 1700000000} {
		if e, _ := got.Get(p); e == nil || e.ModTime != want {
			t.Errorf("%s: mtime %v, want %d", p, e, want)
		}
	}
	// Whole seconds: mkfs.xfs's nanoseconds are gone.
	var nsec []string
	if err := xfsDBScript(ctx, image, false, []string{"path /srv/data", "print core.mtime.nsec", "path /", "print core.mtime.nsec"},
		func(line string) error { nsec = append(nsec, line); return nil }); err != nil || strings.Join(nsec, ";") != "core.mtime.nsec = 0;core.mtime.nsec = 0" {
		t.Errorf("mtime nanoseconds %q (%v), want 0", nsec, err)
	}
	// Every name of a linked file holds the content.
	for _, e := range f.Tree.Entries() {
		if target := resolve(f.Tree, e); target.Type == tree.Regular && target.Size > 0 {
			h, err := ContentHash(ctx, image, "xfs", e.Path)
			if err != nil {
				t.Fatal(err)
			}
			if want := hashFile(t, filepath.Join(f.Root, target.Path)); h != want {
				t.Errorf("%s: content hash %s, want %s", e.Path, h, want)
			}
		}
	}
}

// checkLinkGroups asserts with inode numbers and stored link counts that
// every name of a group is one inode, counted right, and that no other
// inode is reachable.
func checkLinkGroups(ctx context.Context, t *testing.T, want *tree.Tree, image string) {
	t.Helper()
	inodes, err := ReadXFSInodes(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Inode{}
	for _, x := range inodes {
		for _, n := range x.Names {
			byName[n] = x
		}
	}
	groups := map[string][]string{}
	for p, leader := range linkGroups(want) {
		groups[leader] = append(groups[leader], p)
	}
	linked := 0
	for leader, names := range groups {
		x := byName[leader]
		if e, _ := want.Get(leader); e.Type != tree.Dir && (x.Nlink != uint32(len(names)) || len(x.Names) != len(names)) {
			t.Errorf("%s: inode %d has link count %d and names %q, want %d names", leader, x.Ino, x.Nlink, x.Names, len(names))
		}
		for _, n := range names {
			if byName[n].Ino != x.Ino {
				t.Errorf("%s: inode %d, want %d as %s", n, byName[n].Ino, x.Ino, leader)
			}
		}
		if len(names) > 1 {
			linked++
		}
	}
	if len(inodes) != len(groups) || linked != 6 {
		t.Errorf("%d inodes with %d link groups, want %d inodes with 6", len(inodes), linked, len(groups))
	}
}

// checkDirFormats makes sure bigDirs are in the formats they are meant to
// exercise: a block directory maps only data, a leaf directory one block at
// the leaf offset (32 GiB), a node directory a free index at 64 GiB.
func checkDirFormats(ctx context.Context, t *testing.T, image string) {
	t.Helper()
	geo, err := xfsGeometry(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	leaf := (uint64(32) << 30) / geo.blockSize
	for _, b := range bigDirs {
		ino, err := xfsLookup(ctx, image, geo.rootIno, b.dir)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("xfs_db", "-r", "-c", fmt.Sprintf("inode %d", ino), "-c", "bmap", image).Output()
		if err != nil {
			t.Fatal(err)
		}
		format := "block"
		for _, line := range strings.Split(string(out), "\n") {
			var off uint64
			if _, err := fmt.Sscanf(line, "data offset %d", &off); err == nil && off >= 2*leaf {
				format = "node"
			} else if err == nil && off >= leaf && format == "block" {
				format = "leaf"
			}
		}
		if format != b.format {
			t.Errorf("%s (%d entries) is a %s directory, want %s", b.dir, b.entries, format, b.format)
		}
	}
}

func TestXFSMtimeOutOfRange(t *testing.T) {
	f := newFixture(t)
	f.File("ok", []byte("x"), 0o644, 0, 0).ModTime = xfsMaxTime + 1
	_, err := Build(context.Background(), f.Root, f.Tree, filepath.Join(t.TempDir(), "x.img"), Options{Filesystem: "xfs"})
	if err == nil || !strings.Contains(err.Error(), `"ok": mtime 7075888389 is outside`) {
		t.Fatalf("error %v, want the mtime refused", err)
	}
}

// TestRepairReport: the xfs_repair run that frees stand-ins must report
// exactly those.
func TestRepairReport(t *testing.T) {
	plan := &linkPlan{links: []xfsLink{{stand: 132}, {stand: 262273}}}
	routine := []string{
		"Phase 1 - find and verify superblock...", "Cannot get host filesystem geometry.",
		"        - agno = 0", "done", "",
	}
	freed := []string{
		"imap claims a free inode 132 is in use, correcting imap and clearing inode", "cleared inode 132",
		"imap claims a free inode 262273 is in use, correcting imap and clearing inode", "cleared inode 262273",
	}
	for name, c := range map[string]struct {
		lines []string
		err   string
	}{
		"clean":       {append(routine, freed...), ""},
		"one missing": {append(routine, freed[:2]...), "freed 1 of the 2"},
		"another inode": {append(append(routine, freed...), "cleared inode 140"),
			"found more than the inodes hard links replaced: cleared inode 140"},
		"a fix": {append(append(routine, freed...), "resetting inode 131 nlinks from 1 to 3"), "resetting inode 131"},
	} {
		r := newRepairReport(plan)
		for _, l := range c.lines {
			if err := r.line(l); err != nil {
				t.Fatal(err)
			}
		}
		err := r.check()
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: error %v, want %q", name, err, c.err)
		}
	}
}

// TestRepairRefusesOtherDamage runs the real xfs_repair on an image with a
// problem that is not a stand-in: repairXFS must not pass it off.
func TestRepairRefusesOtherDamage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.File("a", []byte("x"), 0o644, 0, 0)
	image := filepath.Join(t.TempDir(), "x.img")
	const uuid = "5a1e0b5e-0000-4000-8000-000000000001"
	if _, err := Build(ctx, f.Root, f.Tree, image, Options{Filesystem: "xfs", UUID: uuid}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("xfs_db", "-r", "-c", "uuid", image).Output(); err != nil || strings.TrimSpace(string(out)) != "UUID = "+uuid {
		t.Errorf("uuid: %q %v", out, err)
	}
	geo, err := xfsGeometry(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	ino, err := xfsLookup(ctx, image, geo.rootIno, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := xfsDBScript(ctx, image, true, []string{fmt.Sprintf("inode %d", ino), "write core.nlinkv2 5"}, checkWrite); err != nil {
		t.Fatal(err)
	}
	err = repairXFS(ctx, image, &linkPlan{})
	if err == nil || !strings.Contains(err.Error(), "found more than") || !strings.Contains(err.Error(), "nlinks from 5 to 1") {
		t.Fatalf("error %v, want xfs_repair's link count fix refused", err)
	}
}
