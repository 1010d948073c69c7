package fsimage

// Hard links on xfs. mkfs.xfs's protofile (xfsprogs 6.1) cannot say that
// two names share an inode, and xfs_db has no link command. So the
// protofile gives each extra name of an inode an empty stand-in inode of the
// same type, and then:
//
//  1. xfs_db -x points the name's directory entry at the real inode. Only
//     the entry's inode number changes: the name, its hash, the leaf and
//     node indexes of block, leaf and node directories and the entry's file
//     type stay valid, whatever the directory's format.
//  2. The stand-in, now nameless, gets mode 0 (a free inode) and the real
//     inode its link count.
//  3. xfs_repair marks the stand-ins free in the inode btrees, the AGIs and
//     the superblock counters: its phase 5 rebuilds all of them from the
//     inodes it finds. Its report must say exactly that and nothing else,
//     and xfs_repair -n must then find nothing.

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway/slipway/services/builder/tree"
)

// xfsLink is one extra name of an inode: the entry for path in directory
// inode dir names stand, the protofile's stand-in, and must name target.
type xfsLink struct {
	path               string
	dir, stand, target uint64
}

// linkPlan is what hard-linking an image takes.
type linkPlan struct {
	links []xfsLink
	// nlink is each linked inode's final link count.
	nlink map[uint64]uint32
}

// planLinks pairs every hard link of t with the stand-in mkfs.xfs made for
// it and the inode it must name instead.
func planLinks(t *tree.Tree, byPath map[string]*listed) (*linkPlan, error) {
	p := &linkPlan{nlink: map[uint64]uint32{}}
	for _, e := range t.Entries() {
		if e.Type != tree.Hardlink {
			continue
		}
		target := resolve(t, e)
		x, to, dir := byPath[e.Path], byPath[target.Path], byPath[path.Dir(e.Path)]
		if x == nil || to == nil || dir == nil {
			return nil, fmt.Errorf("xfs: hard link %q or its target %q is missing from the image mkfs.xfs made", e.Path, target.Path)
		}
		if x.ino == to.ino {
			continue
		}
		p.links = append(p.links, xfsLink{path: e.Path, dir: dir.ino, stand: x.ino, target: to.ino})
		if _, ok := p.nlink[to.ino]; !ok {
			p.nlink[to.ino] = to.nlink
		}
		p.nlink[to.ino]++
	}
	return p, nil
}

// dirSlot is where a directory entry's inode number is written: a field of
// the directory inode (short form, block -1) or of its directory block at
// file offset block.
type dirSlot struct {
	block int64
	field string
}

var (
	// u3.sfdir3.list[2].inumber.i4 = 131
	sfEntry = regexp.MustCompile(`^(u3\.sfdir3\.list\[\d+\]\.inumber\.(i4|i8)) = (\d+)$`)
	// bu[8].inumber = 262279 (block directories), du[50].inumber = … (data blocks)
	dataEntry = regexp.MustCompile(`^([bd]u\[\d+\]\.inumber) = (\d+)$`)
)

// findSlots finds the directory entry of every stand-in of p, reading the
// directories that hold them with xfs_db.
func findSlots(ctx context.Context, image string, geo xfsGeo, p *linkPlan, l *inodeList) (map[uint64]dirSlot, error) {
	want := map[uint64]map[uint64]xfsLink{} // directory → stand-in → link
	for _, k := range p.links {
		if want[k.dir] == nil {
			want[k.dir] = map[uint64]xfsLink{}
		}
		want[k.dir][k.stand] = k
	}
	slots := map[uint64]dirSlot{}
	var local, blocky []uint64
	for _, dir := range slices.Sorted(maps.Keys(want)) {
		switch f := l.byIno[dir].format; f {
		case "local":
			local = append(local, dir)
		case "extents", "btree":
			blocky = append(blocky, dir)
		default:
			return nil, fmt.Errorf("xfs: directory inode %d has data fork format %q", dir, f)
		}
	}
	if err := findShortForm(ctx, image, local, want, slots); err != nil {
		return nil, err
	}
	if err := findInBlocks(ctx, image, geo, blocky, want, slots); err != nil {
		return nil, err
	}
	for _, k := range p.links {
		if _, ok := slots[k.stand]; !ok {
			return nil, fmt.Errorf("xfs: hard link %q: no entry for inode %d in directory inode %d", k.path, k.stand, k.dir)
		}
	}
	return slots, nil
}

// findShortForm reads directories held in their inode.
func findShortForm(ctx context.Context, image string, dirs []uint64, want map[uint64]map[uint64]xfsLink, slots map[uint64]dirSlot) error {
	var cmds []string
	for _, dir := range dirs {
		cmds = append(cmds, fmt.Sprintf("echo %s%d", xfsMarker, dir), fmt.Sprintf("inode %d", dir), "print u3")
	}
	var dir uint64
	return xfsDBScript(ctx, image, false, cmds, func(line string) error {
		if m, ok := strings.CutPrefix(line, xfsMarker); ok {
			var err error
			dir, err = strconv.ParseUint(strings.TrimSpace(m), 10, 64)
			return err
		}
		m := sfEntry.FindStringSubmatch(line)
		if m == nil {
			return nil
		}
		ino, _ := strconv.ParseUint(m[3], 10, 64)
		k, ok := want[dir][ino]
		if !ok {
			return nil
		}
		if m[2] == "i4" && k.target > math.MaxUint32 {
			return fmt.Errorf("xfs: hard link %q: its directory holds 32-bit inode numbers and the target's is %d (use ext4, or a smaller image)", k.path, k.target)
		}
		return addSlot(slots, k, dirSlot{block: -1, field: m[1]})
	})
}

func addSlot(slots map[uint64]dirSlot, k xfsLink, s dirSlot) error {
	if _, dup := slots[k.stand]; dup {
		return fmt.Errorf("xfs: hard link %q: inode %d has two entries in directory inode %d", k.path, k.stand, k.dir)
	}
	slots[k.stand] = s
	return nil
}

// findInBlocks reads the data blocks of directories stored in blocks
// (block, leaf and node formats): their extents first, then each block.
func findInBlocks(ctx context.Context, image string, geo xfsGeo, dirs []uint64, want map[uint64]map[uint64]xfsLink, slots map[uint64]dirSlot) error {
	if len(dirs) == 0 {
		return nil
	}
	blocks, err := dirDataBlocks(ctx, image, geo, dirs)
	if err != nil {
		return err
	}
	var cmds []string
	for _, dir := range dirs {
		for _, b := range blocks[dir] {
			cmds = append(cmds, fmt.Sprintf("echo %s%d %d", xfsMarker, dir, b), fmt.Sprintf("inode %d", dir),
				fmt.Sprintf("dblock %d", b), "print")
		}
	}
	var dir uint64
	var block int64
	return xfsDBScript(ctx, image, false, cmds, func(line string) error {
		if m, ok := strings.CutPrefix(line, xfsMarker); ok {
			_, err := fmt.Sscanf(m, "%d %d", &dir, &block)
			return err
		}
		if !strings.Contains(line, " = ") {
			// dblock or print failed: the address did not move, so what
			// follows would be another block's entries.
			return fmt.Errorf("xfs_db: directory inode %d, block %d: %s", dir, block, line)
		}
		m := dataEntry.FindStringSubmatch(line)
		if m == nil {
			return nil
		}
		ino, _ := strconv.ParseUint(m[2], 10, 64)
		if k, ok := want[dir][ino]; ok {
			return addSlot(slots, k, dirSlot{block: block, field: m[1]})
		}
		return nil
	})
}

// dirDataBlocks lists the file offsets of each directory's data blocks:
// those mapped below the leaf section (XFS_DIR2_LEAF_OFFSET, 32 GiB), one
// per directory block.
func dirDataBlocks(ctx context.Context, image string, geo xfsGeo, dirs []uint64) (map[uint64][]int64, error) {
	leaf := (uint64(32) << 30) / geo.blockSize
	var cmds []string
	for _, dir := range dirs {
		cmds = append(cmds, fmt.Sprintf("echo %s%d", xfsMarker, dir), fmt.Sprintf("inode %d", dir), "bmap")
	}
	out := map[uint64][]int64{}
	var dir uint64
	err := xfsDBScript(ctx, image, false, cmds, func(line string) error {
		if m, ok := strings.CutPrefix(line, xfsMarker); ok {
			var err error
			dir, err = strconv.ParseUint(strings.TrimSpace(m), 10, 64)
			return err
		}
		var off, count uint64
		var flag int
		// data offset 0 startblock 32783 (1/15) count 1 flag 0
		if _, err := fmt.Sscanf(line, "data offset %d startblock %d (%d/%d) count %d flag %d",
			&off, new(uint64), new(uint64), new(uint64), &count, &flag); err != nil {
			return nil
		}
		first := (off + geo.dirBlocks - 1) / geo.dirBlocks * geo.dirBlocks
		for b := first; b < off+count && b < leaf; b += geo.dirBlocks {
			out[dir] = append(out[dir], int64(b))
		}
		return nil
	})
	return out, err
}

// linkCommands are the xfs_db -x commands that carry out p: entries
// re-pointed, stand-ins freed, link counts set.
func linkCommands(p *linkPlan, slots map[uint64]dirSlot) []string {
	var cmds []string
	for _, k := range p.links {
		s := slots[k.stand]
		cmds = append(cmds, fmt.Sprintf("inode %d", k.dir))
		if s.block >= 0 {
			cmds = append(cmds, fmt.Sprintf("dblock %d", s.block))
		}
		cmds = append(cmds, fmt.Sprintf("write %s %d", s.field, k.target),
			fmt.Sprintf("inode %d", k.stand), "write core.mode 0")
	}
	for _, ino := range slices.Sorted(maps.Keys(p.nlink)) {
		cmds = append(cmds, fmt.Sprintf("inode %d", ino), fmt.Sprintf("write core.nlinkv2 %d", p.nlink[ino]))
	}
	return cmds
}

var (
	// repairRoutine is what xfs_repair always says.
	repairRoutine = regexp.MustCompile(`^(|done|Phase \d+ - .*|\s+- .*|Cannot get host filesystem geometry\.|` +
		`Repair may fail if there is a sector size mismatch between|the image and the host filesystem\.)$`)
	// repairFreed is what it says when it frees a stand-in.
	repairFreed = regexp.MustCompile(`^(?:imap claims a free inode (\d+) is in use, correcting imap and clearing inode|cleared inode (\d+))$`)
)

// repairXFS runs xfs_repair to free the stand-ins, and fails if it did
// anything else or missed one.
func repairXFS(ctx context.Context, image string, p *linkPlan) error {
	r := newRepairReport(p)
	if err := runMerged(ctx, r.line, "xfs_repair", "-f", image); err != nil {
		return fmt.Errorf("xfs: freeing the inodes hard links replaced: %w: %s", err, strings.Join(r.other, "; "))
	}
	return r.check()
}

// repairReport reads xfs_repair's report line by line.
type repairReport struct {
	stands, cleared map[uint64]bool
	other           []string // unexpected lines, the first few
}

func newRepairReport(p *linkPlan) *repairReport {
	r := &repairReport{stands: map[uint64]bool{}, cleared: map[uint64]bool{}}
	for _, k := range p.links {
		r.stands[k.stand] = true
	}
	return r
}

func (r *repairReport) line(line string) error {
	if repairRoutine.MatchString(line) {
		return nil
	}
	if m := repairFreed.FindStringSubmatch(line); m != nil {
		ino, _ := strconv.ParseUint(cmp.Or(m[1], m[2]), 10, 64)
		if r.stands[ino] {
			r.cleared[ino] = true
			return nil
		}
	}
	if len(r.other) < 8 {
		r.other = append(r.other, line)
	}
	return nil
}

func (r *repairReport) check() error {
	if len(r.other) > 0 {
		return fmt.Errorf("xfs: xfs_repair found more than the inodes hard links replaced: %s", strings.Join(r.other, "; "))
	}
	if len(r.cleared) != len(r.stands) {
		return fmt.Errorf("xfs: xfs_repair freed %d of the %d inodes hard links replaced", len(r.cleared), len(r.stands))
	}
	return nil
}
