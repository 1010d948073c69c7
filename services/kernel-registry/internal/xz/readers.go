package xz

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
)

// seqReader decodes blocks one after the other as a stream.
type seqReader struct {
	stream
	pending   *blockHeader // read already (by the parallel producer)
	bh        *blockHeader
	block     io.Reader // nil between blocks
	hash      hash.Hash
	dataStart int64
	got       int64
	err       error
}

func (s *seqReader) Read(p []byte) (int, error) {
	for s.err == nil {
		if s.block == nil {
			if s.err = s.nextBlock(); s.err != nil {
				break
			}
		}
		n, err := s.block.Read(p)
		s.got += int64(n)
		if s.hash != nil {
			s.hash.Write(p[:n])
		}
		switch {
		case errors.Is(err, io.EOF):
			s.err = s.endBlock()
			s.block = nil
		case err != nil:
			s.err = fmt.Errorf("xz: %w", err)
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, s.err
}

func (s *seqReader) Close() error { return nil }

// nextBlock sets up the next block's decoder; io.EOF after the last.
func (s *seqReader) nextBlock() error {
	bh := s.pending
	s.pending = nil
	if bh == nil {
		var err error
		if bh, err = s.readBlockHeader(); err != nil {
			return err
		}
		if bh == nil {
			return io.EOF
		}
	}
	var err error
	if s.hash, err = s.newHash(); err != nil {
		return err
	}
	s.bh, s.dataStart, s.got = bh, s.src.n, 0
	s.block, err = s.decoder(bh, s.src)
	return err
}

// endBlock checks the sizes and reads the padding and check.
func (s *seqReader) endBlock() error {
	comp := s.src.n - s.dataStart
	switch {
	case s.bh.uncSize >= 0 && s.got != s.bh.uncSize:
		return fmt.Errorf("xz: block holds %d bytes, its header says %d", s.got, s.bh.uncSize)
	case s.bh.compSize >= 0 && comp != s.bh.compSize:
		return fmt.Errorf("xz: block has %d compressed bytes, its header says %d", comp, s.bh.compSize)
	}
	stored, err := s.readTrailer(s.bh.size + comp)
	if err != nil {
		return err
	}
	return s.verify(s.hash, stored)
}

// parReader decodes blocks that declare their sizes on several workers and
// hands their data out in order.
type parReader struct {
	segs     chan segment
	stop     chan struct{}
	stopOnce sync.Once
	cur      io.Reader
	err      error
}

// segment is the next piece of output: a block decoded whole, the rest of
// the stream as one streaming reader, or an error.
type segment struct {
	result chan blockResult
	rest   io.Reader
	err    error
}

type blockResult struct {
	data []byte
	err  error
}

func newParReader(st stream, workers int) *parReader {
	p := &parReader{segs: make(chan segment, workers), stop: make(chan struct{})}
	go p.produce(st, workers)
	return p
}

// produce reads the blocks in order and starts their decoding; the
// channel's capacity bounds the blocks held in memory.
func (p *parReader) produce(st stream, workers int) {
	defer close(p.segs)
	sem := make(chan struct{}, workers)
	for {
		bh, err := st.readBlockHeader()
		if err != nil || bh == nil {
			if err != nil {
				p.send(segment{err: err})
			}
			return
		}
		if bh.compSize < 0 || bh.uncSize < 0 || bh.compSize > MaxParallelBlock || bh.uncSize > MaxParallelBlock {
			// The rest streams through one decoder, which owns the source now.
			p.send(segment{rest: &seqReader{stream: st, pending: bh}})
			return
		}
		comp := make([]byte, bh.compSize)
		if _, err := io.ReadFull(st.src, comp); err != nil {
			p.send(segment{err: fmt.Errorf("xz: block data: %w", err)})
			return
		}
		stored, err := st.readTrailer(bh.size + bh.compSize)
		if err != nil {
			p.send(segment{err: err})
			return
		}
		res := make(chan blockResult, 1)
		if !p.send(segment{result: res}) {
			return
		}
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			res <- st.decodeWhole(bh, comp, stored)
		}()
	}
}

// send queues a segment unless the reader was closed.
func (p *parReader) send(s segment) bool {
	select {
	case p.segs <- s:
		return true
	case <-p.stop:
		return false
	}
}

// decodeWhole decodes a block held in memory and verifies it.
func (st stream) decodeWhole(bh *blockHeader, comp, stored []byte) blockResult {
	cr := bytes.NewReader(comp)
	dec, err := st.decoder(bh, cr)
	if err != nil {
		return blockResult{err: err}
	}
	data := make([]byte, bh.uncSize)
	if _, err := io.ReadFull(dec, data); err != nil {
		return blockResult{err: fmt.Errorf("xz: block data: %w", err)}
	}
	if n, _ := dec.Read(make([]byte, 1)); n != 0 || cr.Len() != 0 {
		return blockResult{err: errors.New("xz: block data does not match its declared sizes")}
	}
	h, err := st.newHash()
	if err != nil {
		return blockResult{err: err}
	}
	if h != nil {
		h.Write(data)
	}
	if err := st.verify(h, stored); err != nil {
		return blockResult{err: err}
	}
	return blockResult{data: data}
}

func (p *parReader) Read(b []byte) (int, error) {
	for p.err == nil {
		if p.cur != nil {
			n, err := p.cur.Read(b)
			if errors.Is(err, io.EOF) {
				p.cur = nil
				err = nil
			}
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		seg, ok := <-p.segs
		switch {
		case !ok:
			p.err = io.EOF
		case seg.err != nil:
			p.err = seg.err
		case seg.rest != nil:
			p.cur = seg.rest
		default:
			r := <-seg.result
			if r.err != nil {
				p.err = r.err
			} else {
				p.cur = bytes.NewReader(r.data)
			}
		}
	}
	return 0, p.err
}

// Close stops the producer; blocks being decoded finish in the background
// and are dropped.
func (p *parReader) Close() error {
	p.stopOnce.Do(func() { close(p.stop) })
	return nil
}
