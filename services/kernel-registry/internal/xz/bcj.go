package xz

import (
	"errors"
	"io"
)

// x86BCJ undoes xz's x86 branch/call/jump filter (liblzma simple/x86.c):
// the encoder turned the relative targets of E8 (CALL) and E9 (JMP)
// instructions into absolute ones so they compress better; decoding turns
// them back. It works on a buffer and keeps the last few bytes, which may
// begin an instruction, until more data arrives.
type x86BCJ struct {
	r                    io.Reader
	buf                  []byte
	start, filtered, end int // buf[start:filtered] is ready, buf[filtered:end] waits for more
	pos                  uint32
	prevMask, prevPos    uint32
	eof                  bool
	err                  error
}

func newX86BCJ(r io.Reader, start uint32) *x86BCJ {
	return &x86BCJ{r: r, buf: make([]byte, 64<<10), pos: start, prevPos: start - 5}
}

func (b *x86BCJ) Read(p []byte) (int, error) {
	for {
		if b.start < b.filtered {
			n := copy(p, b.buf[b.start:b.filtered])
			b.start += n
			return n, nil
		}
		if b.eof {
			return 0, b.err
		}
		copy(b.buf, b.buf[b.start:b.end])
		b.end -= b.start
		b.start, b.filtered = 0, 0
		n, err := b.r.Read(b.buf[b.end:])
		b.end += n
		if err != nil {
			b.eof, b.err = true, err
		}
		k := b.code(b.buf[:b.end])
		b.filtered = k
		b.pos += uint32(k)
		if b.eof {
			b.filtered = b.end // the last bytes cannot start a 5-byte instruction
			if !errors.Is(b.err, io.EOF) {
				b.filtered = k
			}
		}
	}
}

func test86MSByte(b byte) bool { return b == 0 || b == 0xff }

var (
	maskToAllowed   = [8]bool{true, true, true, false, true, false, false, false}
	maskToBitNumber = [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
)

// code decodes buf in place, buf[0] being at stream position b.pos, and
// returns how many bytes are final.
func (b *x86BCJ) code(buf []byte) int {
	if len(buf) < 5 {
		return 0
	}
	prevMask, prevPos := b.prevMask, b.prevPos
	if b.pos-prevPos > 5 {
		prevPos = b.pos - 5
	}
	limit := len(buf) - 5
	i := 0
	for i <= limit {
		c := buf[i]
		if c != 0xe8 && c != 0xe9 {
			i++
			continue
		}
		offset := b.pos + uint32(i) - prevPos
		prevPos = b.pos + uint32(i)
		if offset > 5 {
			prevMask = 0
		} else {
			for range offset {
				prevMask &= 0x77
				prevMask <<= 1
			}
		}
		c = buf[i+4]
		if test86MSByte(c) && maskToAllowed[(prevMask>>1)&7] && (prevMask>>1) < 0x10 {
			src := uint32(c)<<24 | uint32(buf[i+3])<<16 | uint32(buf[i+2])<<8 | uint32(buf[i+1])
			var dest uint32
			for {
				dest = src - (b.pos + uint32(i) + 5)
				if prevMask == 0 {
					break
				}
				n := maskToBitNumber[prevMask>>1]
				c = byte(dest >> (24 - n*8))
				if !test86MSByte(c) {
					break
				}
				src = dest ^ (1<<(32-n*8) - 1)
			}
			buf[i+4] = ^byte((dest>>24)&1 - 1)
			buf[i+3] = byte(dest >> 16)
			buf[i+2] = byte(dest >> 8)
			buf[i+1] = byte(dest)
			i += 5
			prevMask = 0
		} else {
			i++
			prevMask |= 1
			if test86MSByte(c) {
				prevMask |= 0x10
			}
		}
	}
	b.prevMask, b.prevPos = prevMask, prevPos
	return i
}
