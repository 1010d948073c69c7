package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// Info describes a stored blob.
type Info struct {
	Bucket, Key string
	Size        int64
	SHA256      string // hex, of the whole content, computed by Put
	// S3Checksum is the object's SHA-256 additional checksum as the store
	// recorded it after verifying it on receipt: base64 of the content's
	// SHA-256 for a single PUT, "<base64>-<parts>" (the SHA-256 of the
	// parts' SHA-256s) for a multipart upload; "" when the store recorded
	// none. Compare it with ObjectInfo.S3Checksum (StatChecksum).
	S3Checksum string
}

// URL returns the blob's s3:// URL.
func (i Info) URL() string { return URL(i.Bucket, i.Key) }

// PutOption tunes one Put.
type PutOption func(*putOptions)

type putOptions struct {
	contentType  string
	expectSHA256 string
	progress     func(int64)
	command      string
}

// ContentType sets the stored object's Content-Type.
func ContentType(ct string) PutOption { return func(o *putOptions) { o.contentType = ct } }

// ExpectSHA256 makes Put fail, storing nothing, when the data's SHA-256 is
// not hexDigest. A "sha256:" prefix is accepted.
func ExpectSHA256(hexDigest string) PutOption {
	return func(o *putOptions) {
		o.expectSHA256 = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(hexDigest), "sha256:"))
	}
}

// OwnedBy records in the object's metadata (MetaCommand) the ID of the
// command whose job writes it, so that a failed job can later tell an
// object it wrote from one it must not touch (see DeleteIfOwned).
func OwnedBy(commandID string) PutOption { return func(o *putOptions) { o.command = commandID } }

// Progress has fn called with the number of bytes sent so far (summed over
// the parts in flight, a retried request's bytes counted once), often
// (every few KiB): callers rate-limit what they do with it. Calls come one
// at a time, with numbers that only grow, but from the HTTP transport's
// goroutines: fn must not block.
func Progress(fn func(bytesDone int64)) PutOption { return func(o *putOptions) { o.progress = fn } }

// S3 allows at most this many parts in a multipart upload.
const maxParts = 10000

// partsPerStep is how many parts of one size an upload of unknown size sends
// before it doubles the part size, so that a stream can grow well past
// PartSize*10000 (585 GiB with 16 MiB parts) while small and medium uploads
// keep a buffer of exactly PartSize.
const partsPerStep = 2500

// abortTimeout bounds clean-up after a failure; clean-up runs even when the
// caller's context is what failed.
const abortTimeout = 30 * time.Second

// PutFile stores the file at path as bucket/key (Put, with the file's
// size). begin, when set, is told that size before anything is sent and
// may still refuse the upload with an error (a job sets its phase and
// checks the destination there); progress, when set, gets the bytes sent
// so far and the size.
func (s *Store) PutFile(ctx context.Context, bucket, key, path string, begin func(size int64) error, progress func(done, total int64), opts ...PutOption) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Info{}, err
	}
	size := st.Size()
	if begin != nil {
		if err := begin(size); err != nil {
			return Info{}, err
		}
	}
	if progress != nil {
		opts = append(opts, Progress(func(n int64) { progress(n, size) }))
	}
	return s.Put(ctx, bucket, key, f, size, opts...)
}

// Put stores the data read from r as bucket/key and returns its size and
// SHA-256. size is the exact length of the data, or -1 when unknown; with a
// known size Put reads exactly size bytes and fails if r ends earlier.
//
// Data streams through part-sized buffers (Config.PartSize; doubled every
// 2500 parts for streams of unknown size), at most Config.PartsInFlight of
// them, so memory does not grow with the blob. Data larger than one part
// goes up as a multipart upload: while parts are sent, up to
// PartsInFlight at once, the next part is read from r, which only the
// caller's goroutine reads. The upload is completed only once the whole
// stream was read, every part accepted and the stream's digest matched
// ExpectSHA256: a failed or rejected Put (a read error, a refused part, a
// cancelled ctx) waits for the parts in flight, aborts the upload and
// leaves no object and no incomplete upload behind.
//
// Every request carries the SHA-256 of its bytes as S3's additional
// checksum (per part, and the composite at completion), which the store
// verifies on receipt: data changed on the way is refused (ErrDigestRefused)
// and the checksum the store recorded comes back in Info.S3Checksum, for a
// reader to compare with StatChecksum instead of reading the object back.
func (s *Store) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, opts ...PutOption) (Info, error) {
	var o putOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.expectSHA256 != "" {
		if b, err := hex.DecodeString(o.expectSHA256); err != nil || len(b) != sha256.Size {
			return Info{}, fmt.Errorf("put %s: expected SHA-256 %q is not 64 hex digits", URL(bucket, key), o.expectSHA256)
		}
	}
	if size >= 0 {
		r = io.LimitReader(r, size)
	}
	u := &upload{
		store: s.at(bucket), bucket: bucket, key: key, size: size, opts: o,
		hash:  sha256.New(),
		pOpts: minio.PutObjectOptions{ContentType: o.contentType},
		src:   r,
	}
	if o.progress != nil {
		u.sent = &sentBytes{report: o.progress}
	}
	if o.command != "" {
		u.pOpts.UserMetadata = map[string]string{MetaCommand: o.command}
	}
	info, err := u.run(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("put %s: %w", URL(bucket, key), err)
	}
	return info, nil
}

// upload is the state of one Put.
type upload struct {
	store       *Store // of the server that holds bucket: every request goes to its core
	bucket, key string
	size        int64
	opts        putOptions
	pOpts       minio.PutObjectOptions
	src         io.Reader  // read by the caller's goroutine only
	hash        hash.Hash  // of the whole stream, fed in stream order
	sent        *sentBytes // nil without a Progress option
}

func (u *upload) run(ctx context.Context) (Info, error) {
	buf := u.store.buffer(u.partSize(1))
	n, last, err := u.fill(buf, 0)
	if err != nil {
		u.store.release(buf) // no request has seen it
		return Info{}, err
	}
	if !last {
		return u.multipart(ctx, buf, n)
	}
	info, err := u.single(ctx, buf[:n])
	if err == nil {
		// After a failed request net/http may still be reading the body
		// in the background: such a buffer is not reused.
		u.store.release(buf)
	}
	return info, err
}

// partSizeToFit is least, raised to whole MiB when an object of size bytes
// would need more than maxParts parts of least.
func partSizeToFit(size, least uint64) uint64 {
	if need := (size + maxParts - 1) / maxParts; need > least {
		return (need + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return least
}

// partSize is the size of part number part (1-based): the configured size,
// raised so that a known size fits in maxParts, or doubled every
// partsPerStep parts when the size is unknown.
func (u *upload) partSize(part int) int {
	ps := u.store.partSize
	if u.size >= 0 {
		ps = partSizeToFit(uint64(u.size), ps)
		if uint64(u.size) < ps {
			ps = uint64(u.size) // a small blob needs no full part buffer
		}
		return int(ps)
	}
	return int(ps << ((part - 1) / partsPerStep))
}

// fill reads into buf, which starts at offset off of the stream, until it
// is full or the source ends; last says the source ended (or, with a known
// size, that nothing is left to read).
func (u *upload) fill(buf []byte, off int64) (n int, last bool, err error) {
	n, err = io.ReadFull(u.src, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		last = true
	case err != nil:
		return n, false, fmt.Errorf("read source at offset %d: %w", off+int64(n), err)
	}
	if u.size >= 0 && !last {
		last = off+int64(n) >= u.size
	}
	return n, last, nil
}

// checkEnd verifies the whole stream once it has been read.
func (u *upload) checkEnd(total int64) (string, error) {
	if u.size >= 0 && total != u.size {
		return "", fmt.Errorf("source ended after %d bytes, %d were declared: %w", total, u.size, io.ErrUnexpectedEOF)
	}
	sum := hex.EncodeToString(u.hash.Sum(nil))
	if u.opts.expectSHA256 != "" && sum != u.opts.expectSHA256 {
		return "", fmt.Errorf("SHA-256 mismatch: expected %s, got %s (%d bytes)", u.opts.expectSHA256, sum, total)
	}
	return sum, nil
}

// single stores a blob that fits in one part with one PUT, after the digest
// check, so a mismatch never reaches the store.
func (u *upload) single(ctx context.Context, data []byte) (Info, error) {
	u.hash.Write(data)
	sum, err := u.checkEnd(int64(len(data)))
	if err != nil {
		return Info{}, err
	}
	body := u.progressReader(data)
	// With payload streaming-signing off, minio-go sends sum as
	// X-Amz-Content-Sha256 and the server rejects a body that differs;
	// the same digest as the SHA-256 additional checksum is what the
	// store records and answers a checksum-mode HEAD with.
	opts := u.pOpts
	opts.DisableContentSha256 = true
	opts.UserMetadata = withChecksum(opts.UserMetadata, checksumHeader, hexToBase64(sum))
	up, err := u.store.core.PutObject(ctx, u.bucket, u.key, body, int64(len(data)), "", sum, opts)
	if err != nil {
		return Info{}, digestRefused(err)
	}
	return Info{Bucket: u.bucket, Key: u.key, Size: int64(len(data)), SHA256: sum, S3Checksum: up.ChecksumSHA256}, nil
}

// multipart stores a blob of more than one part; first holds its first n
// bytes.
func (u *upload) multipart(ctx context.Context, first []byte, n int) (info Info, err error) {
	start := u.pOpts
	start.UserMetadata = withChecksum(start.UserMetadata, checksumAlgorithmHeader, "SHA256")
	id, err := u.store.core.NewMultipartUpload(ctx, u.bucket, u.key, start)
	if err != nil {
		u.store.release(first) // no request has seen it
		return Info{}, fmt.Errorf("start multipart upload: %w", err)
	}
	defer func() {
		if err != nil {
			if aerr := u.abort(ctx, id); aerr != nil {
				err = fmt.Errorf("%w (and abort upload %s: %v)", err, id, aerr)
			}
		}
	}()
	ps := newPartSender(ctx, u, id, u.store.partsInFlight())
	ps.readAll(first, n)
	sent, total, err := ps.finish()
	if err != nil {
		return Info{}, err
	}
	sum, err := u.checkEnd(total)
	if err != nil {
		return Info{}, err
	}
	parts := make([]minio.CompletePart, len(sent))
	partSums := make([]byte, 0, len(sent)*sha256.Size) // the parts' raw SHA-256s, in order
	for i, p := range sent {
		parts[i] = p.done
		partSums = append(partSums, p.sum[:]...)
	}
	// The composite checksum (SHA-256 of the parts' SHA-256s) makes the
	// store check that the parts it assembles are the ones hashed here.
	end := u.pOpts
	end.UserMetadata = withChecksum(end.UserMetadata, checksumHeader, compositeChecksum(partSums))
	end.UserMetadata[checksumTypeHeader] = "COMPOSITE"
	up, err := u.store.core.CompleteMultipartUpload(ctx, u.bucket, u.key, id, parts, end)
	if err != nil {
		return Info{}, fmt.Errorf("complete multipart upload of %d parts: %w", len(parts), err)
	}
	return Info{Bucket: u.bucket, Key: u.key, Size: total, SHA256: sum, S3Checksum: up.ChecksumSHA256}, nil
}

// putPart sends one part with its SHA-256 as the additional checksum, which
// the store verifies on receipt (ErrDigestRefused when the bytes it got
// differ), and leaves that SHA-256 in p.sum.
func (u *upload) putPart(ctx context.Context, id string, p *part) (minio.CompletePart, error) {
	p.sum = sha256.Sum256(p.data)
	sent := base64.StdEncoding.EncodeToString(p.sum[:])
	up, err := u.store.core.PutObjectPart(ctx, u.bucket, u.key, id, p.number, u.progressReader(p.data), int64(len(p.data)),
		minio.PutObjectPartOptions{
			// The part's SHA-256 goes as its additional checksum;
			// minio-go's per-chunk payload signing would be a third
			// SHA-256 pass over the data.
			DisableContentSha256: true,
			CustomHeader:         http.Header{checksumHeader: {sent}, checksumAlgorithmHeader: {"SHA256"}},
		})
	if err != nil {
		return minio.CompletePart{}, fmt.Errorf("upload part %d (%d bytes at offset %d): %w", p.number, len(p.data), p.offset, digestRefused(err))
	}
	cp := minio.CompletePart{PartNumber: p.number, ETag: up.ETag}
	switch up.ChecksumSHA256 {
	case "":
		// A store without additional checksums: nothing to list.
	case sent:
		cp.ChecksumSHA256 = sent
	default:
		return minio.CompletePart{}, fmt.Errorf("upload part %d: the store recorded SHA-256 checksum %s, %s was sent", p.number, up.ChecksumSHA256, sent)
	}
	return cp, nil
}

// ErrDigestRefused is wrapped by Put's error when the store refused data
// whose bytes did not match the SHA-256 sent with them.
var ErrDigestRefused = errors.New("the store refused the data: the bytes it received do not match the SHA-256 computed from them before sending (corrupted on the way)")

// digestRefused adds ErrDigestRefused to an S3 error that says a digest
// did not match.
func digestRefused(err error) error {
	switch minio.ToErrorResponse(err).Code {
	case minio.BadDigest, minio.XAmzContentSHA256Mismatch, "XAmzContentChecksumMismatch", "InvalidDigest":
		return fmt.Errorf("%w: %w", ErrDigestRefused, err)
	}
	return err
}

// Headers of S3's additional checksums.
const (
	checksumHeader          = "X-Amz-Checksum-Sha256"
	checksumAlgorithmHeader = "X-Amz-Checksum-Algorithm"
	checksumTypeHeader      = "X-Amz-Checksum-Type"
)

// withChecksum is a copy of meta (which may be shared) with header set.
func withChecksum(meta map[string]string, header, value string) map[string]string {
	out := make(map[string]string, len(meta)+2)
	maps.Copy(out, meta)
	out[header] = value
	return out
}

// compositeChecksum is S3's checksum of a multipart object's checksums:
// the SHA-256 of the parts' raw SHA-256s, in base64 (the store answers it
// with "-<parts>" appended).
func compositeChecksum(partSums []byte) string {
	sum := sha256.Sum256(partSums)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func hexToBase64(hexSum string) string {
	b, _ := hex.DecodeString(hexSum)
	return base64.StdEncoding.EncodeToString(b)
}

// abort removes the multipart upload with a context of its own, since the
// caller's may be the reason for the failure.
func (u *upload) abort(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	return u.store.AbortMultipart(ctx, u.bucket, u.key, id)
}

func (u *upload) progressReader(data []byte) io.Reader {
	r := bytes.NewReader(data)
	if u.sent == nil {
		return r
	}
	return &progressReader{r: r, sent: u.sent}
}

// sentBytes adds up the bytes sent by all the parts of an upload, those in
// flight together included, and reports each new sum: one call at a time,
// so the reported numbers only grow.
type sentBytes struct {
	mu     sync.Mutex
	n      int64
	report func(int64)
}

func (s *sentBytes) add(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += n
	s.report(s.n)
}

// progressReader adds to sent how much further into its part a request has
// read. It stays an io.Seeker so minio-go can still retry a failed
// request, and a retry does not count bytes twice.
type progressReader struct {
	r    *bytes.Reader
	max  int64
	sent *sentBytes
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if pos := p.r.Size() - int64(p.r.Len()); pos > p.max {
		p.sent.add(pos - p.max)
		p.max = pos
	}
	return n, err
}

func (p *progressReader) Seek(offset int64, whence int) (int64, error) {
	return p.r.Seek(offset, whence)
}

var _ io.ReadSeeker = (*progressReader)(nil)

// buffer returns a part buffer of n bytes. Buffers of the configured part
// size are pooled: a service storing many blobs would otherwise allocate
// 16 MiB per Put.
func (s *Store) buffer(n int) []byte {
	if n == int(s.partSize) {
		if b, ok := s.bufs.Get().(*[]byte); ok {
			return *b
		}
	}
	return make([]byte, n)
}

func (s *Store) release(b []byte) {
	if len(b) == int(s.partSize) {
		s.bufs.Put(&b)
	}
}
