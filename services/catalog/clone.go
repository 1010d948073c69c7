package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// Clones (OpenNebula's `oneimage clone`), saga clone:
//
//	image-clone {id, name, datastore}: the source (READY, USED or CLONE)
//	becomes CLONE and lists the clone in cloning_ids; the clone is a new
//	image of the sender's, LOCKED, counted by the quotas as a create.
//	phase copy    the catalog copies the source's blob server side
//	              (blob.Copy: CopyObject, a multipart compose above 5 GiB)
//	              to a key of the saga's attempt, then lets the source go.
//	phase commit  the commit every new image has (newimage.go): the copy's
//	              size and SHA-256 must be the source record's (a HEAD: the
//	              S3 checksum the store recorded for a one-request copy;
//	              a multipart copy has none and is read back when
//	              VERIFY_DIGEST); READY.
//
// The source leaves CLONE when its last clone has its bytes (or failed):
// USED if VMs still hold it, else READY. A failure or a deadline puts the
// clone in ERROR; compensation deletes what the copy wrote under the
// attempt's keys and lets the source go. After a restart the reconciler
// resumes the copy phase: whatever lies under the attempt's keys (a
// half-made multipart copy, an object of the wrong size) is deleted and the
// copy made again; the commit checks it.
const (
	KindClone = "clone"
	PhaseCopy = saga.Phase("copy")
)

// cloneData is the state of a clone saga: importData's (the commit phase is
// the import's own; its Result is what the source record says of its blob)
// and the source.
type cloneData struct {
	importData
	SourceID int64  `json:"source_id"`
	Source   string `json:"source"`
}

// cloneFlow declares the clone saga.
func (s *Service) cloneFlow() *flow {
	copyPhase := phase{
		name: PhaseCopy,
		// A copy moves as many bytes as a conversion, inside the store.
		deadline: s.cfg.ConvertDeadline,
		// Compensation runs for the phases a saga visited: copy always.
		compensate: s.compensateClone,
		resume:     func(_ context.Context, sg *saga.Saga) error { s.clones.run(s, sg.ID); return nil },
	}
	return &flow{kind: KindClone, what: "the clone", reporter: "the server-side copy", fail: s.failClone,
		phases: []phase{copyPhase, s.commitPhase("the clone")}}
}

// cloneRule is what a clone asks of its source (Allow, OpClone).
var cloneRule = rule{
	change: true,
	fits: func(img *schemas.Image) error {
		switch img.Type {
		case schemas.ImageTypeOS, schemas.ImageTypeDatablock, schemas.ImageTypeCDROM:
		default:
			return fmt.Errorf("%s images cannot be cloned", img.Type)
		}
		if img.Attributes[AttrLUKSSecret] != "" {
			// Deleting either image would delete the secret both need.
			return explain("image {id} is LUKS-encrypted: a clone would share its secret, which deleting either image destroys; it cannot be cloned", img)
		}
		if hasSnapshots(*img) {
			//lint:ignore ST1005 OpenNebula's words
			return errors.New("Cannot clone images with snapshots")
		}
		return nil
	},
	allow: []State{StateReady, StateUsed, StateClone},
	refuse: []refused{
		{[]State{StateLocked, StateLockedUsed, StateLockedUsedPers}, "image {id} is {state} (its data is being written): clone it once it is READY"},
		{[]State{StateUsedPers}, "image {id} is {described}: a persistent image a VM writes to cannot be cloned"},
		{[]State{StateError}, "image {id} is in ERROR ({error}): it has no usable data to clone"},
	},
	other: "image {id} is {state}: only READY, USED or CLONE images can be cloned",
	ready: func(img *schemas.Image) error {
		if img.Source == "" || img.SHA256 == "" {
			return explain("image {id} has no stored data (or no SHA-256 to check a copy against) to clone", img)
		}
		return nil
	},
}

// sameDriver refuses a target datastore whose driver is not the source's:
// a datastore of another kind (image or file) or DS_MAD is another
// driver. Another S3 server (a remote datastore) is the same driver: the
// copy is server side within one server, streamed between two
// (blob.Store.Copy).
func sameDriver(src, dst Datastore) error {
	if src.Kind != dst.Kind {
		return refuse("datastore %q is %s datastore and %q %s datastore: a clone stays on its source's driver", dst.Name, anOf(dst.Kind), src.Name, anOf(src.Kind))
	}
	if src.DsMad != dst.DsMad {
		return refuse("datastore %q (DS_MAD %s) and %q (DS_MAD %s) differ: a clone stays on its source's driver",
			dst.Name, orDefault(string(dst.DsMad)), src.Name, orDefault(string(src.DsMad)))
	}
	return nil
}

// orDefault is s, or "s3" (every datastore's driver) when empty.
func orDefault(s string) string {
	if s == "" {
		return "s3"
	}
	return s
}

// anOf is a datastore kind with its article ("an image", "a file").
func anOf(k DatastoreKind) string {
	if k == KindImage {
		return "an " + string(k)
	}
	return "a " + string(k)
}

// clone handles image-clone. Like create, each step tolerates having been
// done already, so a redelivery finishes the job.
func (s *Service) clone(ctx context.Context, m *bus.Msg, prior *processed) (processed, error) {
	var req schemas.ImageClone
	if err := decode(m, &req); err != nil {
		return processed{ImageID: -1}, err
	}
	none := processed{ImageID: req.ID}
	src, err := s.images.existing(ctx, req.ID)
	if err != nil {
		return none, err
	}
	if err := Allow(OpClone, src); err != nil && prior == nil {
		return none, &refusal{err}
	}
	from, err := s.datastore(ctx, src.Datastore)
	if err != nil {
		return none, err
	}
	to := from
	if req.Datastore != "" && req.Datastore != src.Datastore {
		if to, err = s.datastore(ctx, req.Datastore); err != nil {
			return none, err
		}
		if err := sameDriver(from, to); err != nil {
			return none, err
		}
	}
	if err := callerOf(ctx).mayUseDatastore(to); err != nil {
		return none, err
	}
	res, err := s.claimIDs(ctx, m, prior, req.Name)
	if err != nil {
		return none, err
	}
	id, sagaID := res.ImageID, res.SagaID
	dest := blob.URL(to.Bucket, blob.AttemptPrefix(id, sagaID)+"disk."+string(src.Format))
	d := cloneData{
		importData: importData{ImageID: id, CommandID: m.Envelope.ID, Command: m.Subject, Dest: dest,
			// The copy must hold the source record's SHA-256: a one-request
			// copy has the store record it as the whole object's checksum,
			// which the commit compares with a HEAD; a multipart copy (over
			// 5 GiB) records none, and is read back when VERIFY_DIGEST.
			Result: &schemas.ConverterConverted{ImageID: id, Dest: dest, Format: src.Format,
				VirtualSize: src.Size, Size: src.StoredSize, SHA256: src.SHA256, S3Checksum: wholeChecksum(src.SHA256),
				DetectedFormat: src.Format}},
		SourceID: src.ID, Source: src.Source,
	}
	if err := s.start(ctx, sagaID, KindClone, id, d, dest); err != nil {
		return res, err
	}
	if err := s.holdSource(ctx, src.ID, id, func(what string) []bus.PubOption { return causedBy(m.Envelope, "clone-source/"+what) }); err != nil {
		if isRefusal(err) {
			s.abandon(ctx, sagaID, err.Error())
		}
		return res, err
	}
	rec := clonedRecord(src, req.Name, to.Name, id, sagaID)
	if err := s.register(ctx, m, res, func() error { return nil }, rec, nil); err != nil {
		return res, err
	}
	s.clones.run(s, sagaID)
	return res, nil
}

// clonedRecord is the LOCKED record of a clone of src: the source's type,
// format, device prefix, description and attributes, not persistent (as
// OpenNebula's clone).
func clonedRecord(src *schemas.Image, name, datastore string, id int64, sagaID string) *schemas.Image {
	t := now()
	rec := cloneImage(src)
	return &schemas.Image{
		ID: id, Name: name, Datastore: datastore, Type: src.Type, DevPrefix: src.DevPrefix,
		State: schemas.ImageStateLocked, Description: src.Description, Attributes: rec.Attributes,
		Origin: src.Source, SagaID: sagaID, CreatedAt: t, UpdatedAt: t, Size: src.Size,
	}
}

// holdSource puts the source in CLONE (or keeps it there) and lists the
// clone in its cloning_ids.
func (s *Service) holdSource(ctx context.Context, srcID, cloneID int64, opts func(what string) []bus.PubOption) error {
	var from State
	img, changed, err := s.images.Update(ctx, srcID, func(img *schemas.Image) error {
		if slices.Contains(img.CloningIds, cloneID) {
			return errNoChange
		}
		if err := Allow(OpClone, img); err != nil {
			return &refusal{lockedCode(img, err)}
		}
		from = State(img.State)
		img.CloningIds = append(img.CloningIds, cloneID)
		if from != StateClone {
			return transition(img, StateClone)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return refuse("image %d does not exist", srcID)
	}
	if err != nil || !changed {
		return err
	}
	return s.sourceChanged(ctx, img, from, opts)
}

// releaseSource takes the clone off the source's cloning_ids; the last
// one gives the source back: USED if VMs hold it, else READY. Releasing
// twice (a resumed saga, a compensation after a release) changes nothing.
func (s *Service) releaseSource(ctx context.Context, srcID, cloneID int64, opts func(what string) []bus.PubOption) error {
	img, changed, err := s.images.Update(ctx, srcID, func(img *schemas.Image) error {
		i := slices.Index(img.CloningIds, cloneID)
		if i < 0 {
			return errNoChange
		}
		img.CloningIds = slices.Delete(slices.Clone(img.CloningIds), i, i+1)
		if len(img.CloningIds) > 0 || State(img.State) != StateClone {
			if len(img.CloningIds) == 0 {
				img.CloningIds = nil
			}
			return nil
		}
		img.CloningIds = nil
		if img.RVMs > 0 {
			return transition(img, StateUsed)
		}
		return transition(img, StateReady)
	})
	if errors.Is(err, ErrNotFound) {
		return nil // deleted meanwhile: nothing to give back
	}
	if err != nil || !changed {
		return err
	}
	return s.sourceChanged(ctx, img, StateClone, opts)
}

// sourceChanged says what a clone changed on its source: its state, when
// it moved, and its record (cloning_ids).
func (s *Service) sourceChanged(ctx context.Context, img *schemas.Image, from State, opts func(what string) []bus.PubOption) error {
	if to := State(img.State); to != from {
		if err := s.emitState(ctx, img.ID, from, to, "", opts(schemas.EventCatalogStateChanged)); err != nil {
			return err
		}
	}
	return s.emitImage(ctx, schemas.EventCatalogImageUpdated, img, opts(schemas.EventCatalogImageUpdated))
}

// cloneRunner runs the copies of the clone sagas in the background, one
// per saga, on the context of the catalog's Run: ending Run cancels them
// (the reconciler of the next process resumes them).
type cloneRunner struct {
	mu      sync.Mutex
	ctx     context.Context
	running map[string]bool
	wg      sync.WaitGroup
	// beforeCopy, when set (tests), runs before each copy, on the copy's
	// context.
	beforeCopy func(ctx context.Context, sagaID string)
}

// begin makes the runner take copies on ctx.
func (r *cloneRunner) begin(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctx, r.running = ctx, map[string]bool{}
}

// wait waits for the copies in flight to end (their context ends with Run's).
func (r *cloneRunner) wait() { r.wg.Wait() }

// run starts the copy of saga id unless it runs already in this process.
func (r *cloneRunner) run(s *Service, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil || r.running[id] || r.ctx.Err() != nil {
		return
	}
	r.running[id] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { r.mu.Lock(); delete(r.running, id); r.mu.Unlock() }()
		if r.beforeCopy != nil {
			r.beforeCopy(r.ctx, id)
		}
		if err := s.copyClone(r.ctx, id); err != nil && r.ctx.Err() == nil {
			s.log.Error("clone", "saga", id, "err", err)
		}
	}()
}

// copyClone is the copy phase: delete what an interrupted attempt left,
// copy server side, let the source go, then commit.
func (s *Service) copyClone(ctx context.Context, id string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	sg, err := s.sagas.Get(ctx, id)
	if err != nil {
		return err
	}
	if sg.Status != saga.StatusRunning || sg.Phase != PhaseCopy {
		return nil
	}
	var d cloneData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	opts := func(what string) []bus.PubOption { return inSaga(sg.ID, "clone-copied/"+what) }
	if err := s.copyBlob(ctx, d); err != nil {
		if ctx.Err() != nil {
			return err // shutting down: the next process resumes
		}
		return s.failClone(ctx, sg, schemas.CodeInternal, fmt.Sprintf("copy image %d: %v", d.SourceID, err), nil)
	}
	if err := s.releaseSource(ctx, d.SourceID, d.ImageID, opts); err != nil {
		return err
	}
	sg, err = s.advance(ctx, sg, PhaseCopy, PhaseCommit, "copied")
	if errors.Is(err, saga.ErrWrongPhase) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.commit(ctx, sg, nil)
}

// copyBlob copies the source's blob to the clone's key after deleting
// everything under the attempt's keys: a copy interrupted by a kill may
// have left an incomplete multipart upload or a wrong object there.
func (s *Service) copyBlob(ctx context.Context, d cloneData) error {
	srcBucket, srcKey, err := blob.ParseURL(d.Source)
	if err != nil {
		return err
	}
	dstBucket, dstKey, err := blob.ParseURL(d.Dest)
	if err != nil {
		return err
	}
	if err := s.blobs.DeletePrefix(ctx, dstBucket, attemptOfKey(dstKey)); err != nil {
		return err
	}
	start := time.Now()
	info, err := s.blobs.Copy(ctx, srcBucket, srcKey, dstBucket, dstKey)
	if err != nil {
		return err
	}
	s.log.Info("clone copied", "image", d.ImageID, "from", d.Source, "bytes", info.Size, "took", time.Since(start))
	return nil
}

// attemptOfKey is the attempt prefix (images/<id>/<saga>/) of a key in it.
func attemptOfKey(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[:i+1]
		}
	}
	return key
}

// failClone ends a clone in ERROR (failImportCode: the image learns why,
// the saga is failed and compensated, which lets the source go).
func (s *Service) failClone(ctx context.Context, sg *saga.Saga, code, reason string, cause *envelope.Envelope) error {
	return s.failImportCode(ctx, sg, code, reason, cause)
}

// compensateClone deletes what the copy wrote under the attempt's keys
// and lets the source go.
func (s *Service) compensateClone(ctx context.Context, sg *saga.Saga) error {
	var d cloneData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	var errs []error
	if bucket, key, err := blob.ParseURL(d.Dest); err == nil {
		if kept, err := s.images.recordsBlob(ctx, d.ImageID, d.Dest); err != nil {
			errs = append(errs, err)
		} else if !kept {
			errs = append(errs, s.blobs.DeletePrefix(ctx, bucket, attemptOfKey(key)))
		}
	}
	errs = append(errs, s.releaseSource(ctx, d.SourceID, d.ImageID, func(what string) []bus.PubOption { return inSaga(sg.ID, "clone-compensated/"+what) }))
	return errors.Join(errs...)
}
