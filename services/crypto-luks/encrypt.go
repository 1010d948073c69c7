package cryptoluks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/luks"
)

func (s *Service) handleEncrypt(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.CryptoLuksEncrypt
	if err := decode(m, &cmd); err != nil {
		return s.reject(ctx, m, err)
	}
	if err := s.checkDest(m, cmd.ImageID, cmd.Dest); err != nil {
		return s.reject(ctx, m, err)
	}
	if err := s.cfg.Locations.CheckImageBlob(cmd.Source); err != nil {
		return s.reject(ctx, m, fmt.Errorf("%w: %w", errInvalid, err))
	}
	mk := func(ctx context.Context, j *job, dir string, pass []byte) (string, int64, error) {
		return s.encryptFile(ctx, j, cmd, dir, pass)
	}
	return s.makeVolume(ctx, m, cmd.ImageID, cmd.Dest, schemas.LuksPhaseDownload, mk)
}

func (s *Service) handleCreate(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.CryptoLuksCreate
	if err := decode(m, &cmd); err != nil {
		return s.reject(ctx, m, err)
	}
	if err := s.checkDest(m, cmd.ImageID, cmd.Dest); err != nil {
		return s.reject(ctx, m, err)
	}
	mk := func(ctx context.Context, j *job, dir string, pass []byte) (string, int64, error) {
		size := cmd.SizeMiB << 20
		j.SetPhase(schemas.LuksPhaseCreate, 0)
		out := filepath.Join(dir, "disk.luks")
		if err := s.luks.Create(ctx, out, size, pass); err != nil {
			return "", 0, terminalUnlessTransient(err)
		}
		return out, size, nil
	}
	return s.makeVolume(ctx, m, cmd.ImageID, cmd.Dest, schemas.LuksPhaseCreate, mk)
}

// checkDest refuses, before anything is made, a dest that is not the one
// derived from the image and the saga (the command's correlation ID) in a
// datastore bucket.
func (s *Service) checkDest(m *bus.Msg, imageID int64, dest string) error {
	if err := s.cfg.Locations.CheckDest(dest, imageID, m.Envelope.CorrelationID); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	return nil
}

// volumeMaker writes a new LUKS volume opened by pass into dir and returns
// its path and virtual size.
type volumeMaker func(ctx context.Context, j *job, dir string, pass []byte) (path string, virtualSize int64, err error)

// makeVolume is encrypt and create: the image's secret (the same on every
// delivery), the volume, its upload to dest and the encrypted event. On a
// final failure nothing is left: no dest object, no secret.
func (s *Service) makeVolume(ctx context.Context, m *bus.Msg, imageID int64, dest string, first schemas.LuksPhase, mk volumeMaker) error {
	j, stop := s.startJob(ctx, m, imageID, first)
	out, rec, err := s.runMake(ctx, j, imageID, dest, mk)
	stop()
	if err == nil {
		err = s.publish(ctx, m, schemas.EventCryptoLUKSEncrypted, idToken(imageID), out)
	}
	return s.settle(ctx, m, &imageID, err, func() { s.forget(imageID, dest, m.Envelope.ID, rec) })
}

func (s *Service) runMake(ctx context.Context, j *job, imageID int64, dest string, mk volumeMaker) (schemas.CryptoLuksEncrypted, *Record, error) {
	var out schemas.CryptoLuksEncrypted
	bucket, key, err := blob.ParseURL(dest)
	if err != nil {
		return out, nil, fmt.Errorf("%w: dest: %w", errInvalid, err)
	}
	rec, err := s.secretOf(ctx, imageID)
	if err != nil {
		return out, rec, err
	}
	if done, ok := s.alreadyMade(ctx, rec, dest); ok {
		s.log.Info("volume already made: answering again", "image_id", imageID, "secret", rec.Secret)
		return done, rec, nil
	}
	pass, err := s.passphrase(rec, rec.Primary)
	if err != nil {
		return out, rec, terminal(err)
	}
	dir, err := os.MkdirTemp(s.w.Dir(), fmt.Sprintf("image-%d-*", imageID))
	if err != nil {
		return out, rec, fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	path, virtual, err := mk(ctx, j, dir, pass)
	if err != nil {
		return out, rec, err
	}
	// A new volume goes to a fresh key: never over an object another
	// command wrote, and marked as this command's so that only its own
	// failure removes it.
	if err := s.store.CheckFresh(ctx, bucket, key, j.ID); err != nil {
		return out, rec, terminal(fmt.Errorf("dest: %w", err))
	}
	info, err := s.upload(ctx, j, path, bucket, key, blob.OwnedBy(j.ID))
	if err != nil {
		return out, rec, err
	}
	b := &BlobInfo{Dest: dest, Size: info.Size, SHA256: info.SHA256, VirtualSize: virtual, S3Checksum: info.S3Checksum}
	rec, err = s.db.update(ctx, rec.Secret, func(r *Record) error {
		r.State, r.Blob = stateReady, b
		return nil
	})
	if err != nil {
		return out, rec, err
	}
	s.log.Info("LUKS volume stored", "image_id", imageID, "dest", dest, "size", info.Size, "virtual_size", virtual, "secret", rec.Secret)
	return encryptedEvent(rec), rec, nil
}

func encryptedEvent(r *Record) schemas.CryptoLuksEncrypted {
	return schemas.CryptoLuksEncrypted{ImageID: r.ImageID, Dest: r.Blob.Dest, VirtualSize: r.Blob.VirtualSize,
		Size: r.Blob.Size, SHA256: r.Blob.SHA256, S3Checksum: r.Blob.S3Checksum, Secret: r.Secret}
}

// alreadyMade tells a redelivery of a job that finished (its event was
// lost) from one to redo: the record is ready for this dest and the object
// is there with the recorded size.
func (s *Service) alreadyMade(ctx context.Context, r *Record, dest string) (schemas.CryptoLuksEncrypted, bool) {
	if r.State != stateReady || r.Blob == nil || r.Blob.Dest != dest {
		return schemas.CryptoLuksEncrypted{}, false
	}
	bucket, key, err := blob.ParseURL(dest)
	if err != nil {
		return schemas.CryptoLuksEncrypted{}, false
	}
	oi, err := s.store.Stat(ctx, bucket, key)
	if err != nil || oi.Size != r.Blob.Size {
		return schemas.CryptoLuksEncrypted{}, false
	}
	return encryptedEvent(r), true
}

// secretOf returns the record of image id's secret, making it (a new data
// key and a new passphrase for slot 0) on the first delivery.
func (s *Service) secretOf(ctx context.Context, imageID int64) (*Record, error) {
	secret, err := s.db.secretFor(ctx, imageID)
	if err != nil {
		return nil, err
	}
	rec, _, err := s.db.get(ctx, secret)
	if err == nil {
		if rec.ImageID != imageID {
			return nil, terminal(fmt.Errorf("secret %s indexed for image %d belongs to image %d", secret, imageID, rec.ImageID))
		}
		return rec, nil
	}
	if !errors.Is(err, errNoSecret) {
		return nil, err
	}
	dk, wrapped, err := s.keys.NewDataKey(secret)
	if err != nil {
		return nil, err
	}
	pass, err := luks.NewPassphrase()
	if err != nil {
		return nil, err
	}
	sealed, err := dk.Seal(slotLabel(0), pass)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	rec = &Record{Secret: secret, ImageID: imageID, Wrapped: wrapped, Primary: 0, State: stateCreating,
		Slots: []Slot{{Slot: 0, Passphrase: sealed, CreatedAt: now}}, CreatedAt: now}
	if err := s.db.create(ctx, rec); err != nil {
		if errors.Is(err, kvstore.ErrExists) { // another delivery made it first: use that one
			rec, _, err = s.db.get(ctx, secret)
			return rec, err
		}
		return nil, err
	}
	return rec, nil
}

// passphrase opens the passphrase of slot n of r.
func (s *Service) passphrase(r *Record, n int) ([]byte, error) {
	sl, ok := r.slot(n)
	if !ok {
		return nil, fmt.Errorf("secret %s has no passphrase for slot %d", r.Secret, n)
	}
	dk, err := s.keys.Unwrap(r.Secret, r.Wrapped)
	if err != nil {
		return nil, err
	}
	return dk.Open(slotLabel(n), sl.Passphrase)
}

// encryptFile downloads the source and encrypts it into dir/disk.luks.
func (s *Service) encryptFile(ctx context.Context, j *job, cmd schemas.CryptoLuksEncrypt, dir string, pass []byte) (string, int64, error) {
	src := filepath.Join(dir, "source")
	if err := s.download(ctx, j, cmd.Source, src); err != nil {
		return "", 0, err
	}
	j.SetPhase(schemas.LuksPhaseEncrypt, 0)
	out := filepath.Join(dir, "disk.luks")
	if err := s.luks.Encrypt(ctx, src, string(cmd.SourceFormat), out, pass, j.Update); err != nil {
		return "", 0, terminalUnlessTransient(fmt.Errorf("image %d: source %s: %w", cmd.ImageID, cmd.Source, err))
	}
	os.Remove(src) // the plaintext copy goes as soon as it is not needed
	info, err := s.luks.Info(ctx, out)
	if err != nil {
		return "", 0, err
	}
	return out, info.VirtualSize, nil
}

// terminalUnlessTransient classifies a qemu-img failure: a local step
// fails the same way on the same input, unless it was cancelled, ran out
// of disk, or could not time its PBKDF2 on a busy CPU.
func terminalUnlessTransient(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, luks.ErrCPUTiming) ||
		errors.Is(err, syscall.ENOSPC) || containsAny(err.Error(), "No space left on device", "Disk quota exceeded") {
		return transient(err)
	}
	return terminal(err)
}

// download streams an s3:// object into a new file at path.
func (s *Service) download(ctx context.Context, j *job, u, path string) error {
	bucket, key, err := blob.ParseURL(u)
	if err != nil {
		return fmt.Errorf("%w: source: %w", errInvalid, err)
	}
	rc, size, err := s.store.Get(ctx, bucket, key)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer rc.Close()
	j.SetPhase(schemas.LuksPhaseDownload, size)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, &countingReader{r: rc, report: func(n int64) { j.Update(n, size) }})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("got %d of %d bytes", n, size)
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("download %s: %w", u, err)
	}
	return nil
}

// upload stores the file at path as bucket/key, hashing it on the way.
func (s *Service) upload(ctx context.Context, j *job, path, bucket, key string, opts ...blob.PutOption) (blob.Info, error) {
	info, err := s.store.PutFile(ctx, bucket, key, path, func(size int64) error {
		j.SetPhase(schemas.LuksPhaseUpload, size)
		return nil
	}, j.Update, opts...)
	if err != nil {
		return info, fmt.Errorf("upload to %s: %w", blob.URL(bucket, key), err)
	}
	return info, nil
}

// forget removes what a failed encrypt or create made: the dest object if
// this command wrote it (never one that was there before) and the image's
// secret (unless another dest holds a volume it opens).
func (s *Service) forget(imageID int64, dest, commandID string, rec *Record) {
	ctx, cancel := context.WithTimeout(context.Background(), worker.CleanupTimeout)
	defer cancel()
	if _, err := s.store.DeleteIfOwned(ctx, dest, commandID); err != nil {
		s.log.Warn("partial destination not removed", "dest", dest, "err", err)
	}
	if rec == nil {
		secret, err := s.db.lookupImage(ctx, imageID)
		if err != nil {
			return
		}
		if rec, _, err = s.db.get(ctx, secret); err != nil {
			return
		}
	}
	if rec.Blob != nil && rec.Blob.Dest != dest {
		return // an earlier volume of the image still needs it
	}
	if err := s.db.remove(ctx, rec); err != nil {
		s.log.Warn("secret of a failed job not removed", "image_id", imageID, "secret", rec.Secret, "err", err)
	}
}

type countingReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.report(c.n)
	return n, err
}
