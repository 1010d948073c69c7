package ext4

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// ReadAt reads the image: metadata from memory or generated, file data
// from the files under the root, zeros elsewhere. It is safe for
// concurrent use.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("ext4 image: negative offset %d", off)
	}
	n := 0
	for len(p) > 0 {
		if off >= im.size {
			return n, io.EOF
		}
		chunk := p[:min(int64(len(p)), im.size-off)]
		k, err := im.readChunk(chunk, off)
		n += k
		if err != nil {
			return n, err
		}
		p, off = p[k:], off+int64(k)
	}
	return n, nil
}

// readChunk fills a prefix of p from the piece holding off, or with
// zeros up to the next piece, and says how much it filled.
func (im *Image) readChunk(p []byte, off int64) (int, error) {
	blk := off / BlockSize
	i := sort.Search(len(im.pieces), func(i int) bool { return im.pieces[i].end() > blk })
	if i == len(im.pieces) || im.pieces[i].start > blk {
		end := im.size
		if i < len(im.pieces) {
			end = im.pieces[i].start * BlockSize
		}
		k := min(int64(len(p)), end-off)
		clear(p[:k])
		return int(k), nil
	}
	pc := im.pieces[i]
	k := min(int64(len(p)), pc.end()*BlockSize-off)
	return int(k), im.readPiece(pc, p[:k], off-pc.start*BlockSize)
}

// readPiece fills p with the bytes of pc from byte rel of the piece on.
func (im *Image) readPiece(pc piece, p []byte, rel int64) error {
	if pc.kind == pieceFile {
		return im.files.readFile(pc.file, p, pc.logical*BlockSize+rel)
	}
	for len(p) > 0 {
		b := rel / BlockSize
		within := rel % BlockSize
		block := im.block(pc, b)
		k := copy(p, block[within:])
		p, rel = p[k:], rel+int64(k)
	}
	return nil
}

// block returns block b (counted from the piece's start) of a metadata
// piece.
func (im *Image) block(pc piece, b int64) []byte {
	switch pc.kind {
	case pieceSuper:
		out := make([]byte, BlockSize)
		if b == 0 {
			at := 0
			if pc.group == 0 {
				at = 1024 // the boot sector's room
			}
			copy(out[at:], im.super.superblock(pc.group))
			return out
		}
		copy(out, im.gdt[(b-1)*BlockSize:])
		return out
	case pieceBlockBitmap:
		return im.blockBitmap(pc.group)
	case pieceInodeBitmap:
		return im.inodeBitmap(pc.group)
	case pieceInodeTable:
		out := make([]byte, BlockSize)
		from := (pc.group*im.geo.ipg + b*inodesPerBlock) * inodeSize
		copy(out, im.itable[min(from, int64(len(im.itable))):])
		return out
	case pieceStored:
		return im.stored[pc.start+b]
	}
	panic("ext4: unknown piece kind") // not reached: listPieces makes only the kinds above
}

// DataRanges lists the image's non-zero byte ranges, sorted, disjoint and
// block-aligned: metadata and file data alike. Every byte outside them
// reads as zero.
func (im *Image) DataRanges() []Range {
	var out []Range
	for _, pc := range im.pieces {
		r := Range{pc.start * BlockSize, pc.count * BlockSize}
		if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len == r.Off {
			out[n-1].Len += r.Len
			continue
		}
		out = append(out, r)
	}
	return out
}

// WriteMetadata writes a sparse raw image of Size bytes holding only the
// metadata: the regular files' data is left as holes. e2fsck -fn, which
// does not read file data, checks it as it would the whole image.
func (im *Image) WriteMetadata(path string) error {
	return im.write(path, false)
}

// WriteFile writes the whole image, file data included, to a sparse raw
// file of Size bytes.
func (im *Image) WriteFile(path string) error {
	return im.write(path, true)
}

func (im *Image) write(path string, withData bool) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if err := f.Truncate(im.size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, pc := range im.pieces {
		if pc.kind == pieceFile && !withData {
			continue
		}
		for off, end := pc.start*BlockSize, pc.end()*BlockSize; off < end; {
			chunk := buf[:min(int64(len(buf)), end-off)]
			if _, err := im.ReadAt(chunk, off); err != nil {
				return err
			}
			if _, err := f.WriteAt(chunk, off); err != nil {
				return err
			}
			off += int64(len(chunk))
		}
	}
	return nil
}
