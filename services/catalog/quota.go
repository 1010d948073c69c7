package catalog

// Quotas, as OpenNebula has them (its DATASTORE quota): per user and per
// group, per datastore, a limit on the number of images (IMAGES) and on
// their size in MB (SIZE). A limit is -2 (unlimited), -1 (the default
// quota: none is configured, so unlimited), 0 (nothing allowed) or N. The
// limits are kept on the user's and the group's records; the usage is
// counted from the images themselves whenever it is needed, so a crash
// leaves no counter behind to drift. OpenNebula tracks no quota for the
// oneadmin user nor for the oneadmin group, and neither does the catalog.
//
// An image counts against its owner's quota and its group's, in its
// datastore, from its LOCKED record until the record is gone, whatever its
// state. Its size is its virtual size (Image.Size) in MiB rounded up, as
// OpenNebula's SIZE; a LOCKED image whose size is not known yet counts
// what it declared (an empty disk's size_mib, an encryption's source
// size), else nothing.

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// OpenNebula's special limits.
const (
	QuotaDefault   = -1 // the default quota; none is configured: unlimited
	QuotaUnlimited = -2
)

// keyQuotaPrefix keys, in the meta bucket, the sequence of each quota
// ("quota.user.<name>", "quota.group.<name>"): every write an image's
// quota check lets through bumps it, so that checks racing for the last
// slot see each other (withinQuota).
const keyQuotaPrefix = "quota."

// maxQuotaTries bounds how often a check that keeps losing races tries
// again before its command is retried.
const maxQuotaTries = 20

const mib = 1 << 20

// sizeMB is an image's SIZE as OpenNebula counts it: MB (MiB), rounded up.
func sizeMB(bytes int64) int64 { return (bytes + mib - 1) / mib }

// usage is what images take in one datastore.
type usage struct{ images, sizeMB int64 }

// quotaHolder is a user or a group whose quota an image counts against.
type quotaHolder struct {
	kind, name string
	limits     schemas.DatastoreQuota
}

// holderDatastore is the kind of the holder that stands for a datastore's
// capacity (LIMIT_MB): every image in it counts.
const holderDatastore = "datastore"

// owns reports whether img counts against h.
func (h quotaHolder) owns(img *schemas.Image) bool {
	switch h.kind {
	case "user":
		return img.User == h.name
	case holderDatastore:
		return true // usageIn counts the images of h's datastore only
	}
	return img.Group == h.name
}

// limitsIn are the limits qs set in datastore ds (the defaults where
// they set none).
func limitsIn(qs []schemas.DatastoreQuota, ds string) schemas.DatastoreQuota {
	for _, q := range qs {
		if q.Datastore == ds {
			return q
		}
	}
	return schemas.DatastoreQuota{Datastore: ds, Images: QuotaDefault, SizeMb: QuotaDefault}
}

// limited reports whether a limit limits anything (-1 and -2 do not).
func limited(n int64) bool { return n >= 0 }

// usageIn is what the images h owns in datastore ds take, leaving out
// image skip.
func usageIn(all []schemas.Image, owns func(*schemas.Image) bool, ds string, skip int64) usage {
	var u usage
	for i := range all {
		img := &all[i]
		if img.ID != skip && img.Datastore == ds && owns(img) {
			u.images++
			u.sizeMB += sizeMB(img.Size)
		}
	}
	return u
}

// admits checks that own, added to used, stays within h's limits; images
// says whether the image count is checked (not at commit, where the
// image was counted when it was created).
func (h quotaHolder) admits(used, own usage, images bool) error {
	q := h.limits
	if images && limited(q.Images) && used.images+own.images > q.Images {
		return quotaRefusal("%s %s: quota IMAGES %d reached in datastore %s (%d images)", h.kind, h.name, q.Images, q.Datastore, used.images)
	}
	if limited(q.SizeMb) && used.sizeMB+own.sizeMB > q.SizeMb && h.kind == holderDatastore {
		return quotaRefusal("datastore %s is full: its capacity is %d MB (LIMIT_MB), its images take %d MB and this one needs %d MB (%d MB free)",
			h.name, q.SizeMb, used.sizeMB, own.sizeMB, q.SizeMb-used.sizeMB)
	}
	if limited(q.SizeMb) && used.sizeMB+own.sizeMB > q.SizeMb {
		return quotaRefusal("%s %s: quota SIZE %d MB exceeded in datastore %s (%d MB used, the image needs %d MB)",
			h.kind, h.name, q.SizeMb, q.Datastore, used.sizeMB, own.sizeMB)
	}
	return nil
}

func quotaRefusal(format string, args ...any) error {
	return &refusal{bus.WithCode(schemas.CodeQuotaExceeded, fmt.Errorf(format, args...))}
}

// holders are the quotas img counts against that limit something: its
// owner's, unless that is the oneadmin user, and its group's, unless that
// is the oneadmin group (OpenNebula tracks neither); and its datastore's
// capacity (LIMIT_MB), which binds every image in it.
func (s *Service) holders(ctx context.Context, img *schemas.Image) ([]quotaHolder, error) {
	var out []quotaHolder
	add := func(kind, name string, qs []schemas.DatastoreQuota) {
		q := limitsIn(qs, img.Datastore)
		if limited(q.Images) || limited(q.SizeMb) {
			out = append(out, quotaHolder{kind: kind, name: name, limits: q})
		}
	}
	if img.User != acl.AdminUser {
		u, err := existingOrNil(ctx, s.users.users, img.User)
		if err != nil {
			return nil, err
		}
		if u != nil {
			add("user", u.Name, u.Quotas)
		}
	}
	ds, err := s.datastore(ctx, img.Datastore)
	if err != nil && !isRefusal(err) {
		return nil, err
	}
	// The capacity binds everyone, oneadmin too: it is the datastore's.
	if err == nil && ds.LimitMb > 0 {
		out = append(out, quotaHolder{kind: holderDatastore, name: ds.Name,
			limits: schemas.DatastoreQuota{Datastore: ds.Name, Images: QuotaDefault, SizeMb: ds.LimitMb}})
	}
	if img.Group != acl.AdminGroup {
		g, err := existingOrNil(ctx, s.users.groups, img.Group)
		if err != nil {
			return nil, err
		}
		if g != nil {
			add("group", g.Name, g.Quotas)
		}
	}
	return out, nil
}

// existingOrNil reads record name of st; nil when there is none (an
// image whose owner or group was deleted counts against no quota).
func existingOrNil[T any](ctx context.Context, st *kvstore.Store[string, T], name string) (*T, error) {
	v, _, err := st.Get(ctx, name)
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

// quotaView is what one quota check of an image reads: the quotas it
// counts against, the revisions of their sequence keys (read before the
// images are listed) and the images. Nothing more is read when no quota
// limits the image.
type quotaView struct {
	holders []quotaHolder
	revs    []uint64
	all     []schemas.Image
}

// readQuotas reads the view a check of img needs.
func (s *Service) readQuotas(ctx context.Context, img *schemas.Image) (*quotaView, error) {
	hs, err := s.holders(ctx, img)
	if err != nil || len(hs) == 0 {
		return &quotaView{}, err
	}
	revs, err := s.quotaRevisions(ctx, hs)
	if err != nil {
		return nil, err
	}
	all, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	return &quotaView{holders: hs, revs: revs, all: all}, nil
}

// withinQuota runs write, which makes img visible in the images bucket
// taking own, only if img fits every quota it counts against. Two checks
// must not both take the last slot, and the images bucket has no
// transactions: each quota has a sequence key, read before the images
// are counted and bumped (compare-and-set) after write. A bump that fails
// means another write got in between: the check runs again, now counting
// that one too, and undo takes img back out if it no longer fits. A
// racing check may so be refused by a write that is taken back: quotas
// may be under-filled under contention, never exceeded. The first check
// uses v when the caller read it already (nil: it is read here); however
// old, a bump over its revisions still fails if anything got in since.
func (s *Service) withinQuota(ctx context.Context, img *schemas.Image, own usage, images bool, v *quotaView, write, undo func() error) error {
	written := false
	for try := range maxQuotaTries {
		if v == nil {
			var err error
			if v, err = s.readQuotas(ctx, img); err != nil {
				return err
			}
		}
		if len(v.holders) == 0 {
			if written {
				return nil
			}
			return write()
		}
		for _, h := range v.holders {
			if err := h.admits(usageIn(v.all, h.owns, img.Datastore, img.ID), own, images); err != nil {
				if written {
					return errors.Join(err, undo())
				}
				return err
			}
		}
		if !written {
			if err := write(); err != nil {
				return err
			}
			written = true
		}
		if ok, err := s.bumpQuotas(ctx, v.holders, v.revs); err != nil || ok {
			return err
		}
		v = nil
		if err := kvstore.Backoff(ctx, try); err != nil {
			return err
		}
	}
	return fmt.Errorf("image %d: the quota check kept racing other writes", img.ID)
}

func quotaKey(h quotaHolder) string { return keyQuotaPrefix + h.kind + "." + h.name }

// quotaRevisions reads the sequence key of each quota (0: none yet).
func (s *Service) quotaRevisions(ctx context.Context, hs []quotaHolder) ([]uint64, error) {
	revs := make([]uint64, len(hs))
	for i, h := range hs {
		e, err := s.meta.Get(ctx, quotaKey(h))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", quotaKey(h), err)
		default:
			revs[i] = e.Revision()
		}
	}
	return revs, nil
}

// bumpQuotas bumps each sequence key over the revision read; ok is false
// when one had moved.
func (s *Service) bumpQuotas(ctx context.Context, hs []quotaHolder, revs []uint64) (ok bool, err error) {
	ok = true
	for i, h := range hs {
		v := []byte(strconv.FormatUint(revs[i]+1, 10))
		if revs[i] == 0 {
			_, err = s.meta.Create(ctx, quotaKey(h), v)
		} else {
			_, err = s.meta.Update(ctx, quotaKey(h), v, revs[i])
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			ok = false
		case err != nil:
			return false, fmt.Errorf("bump %s: %w", quotaKey(h), err)
		}
	}
	return ok, nil
}

// insertWithinQuota stores a new LOCKED record if it fits its owner's and
// its group's quotas, counting it as one image of its declared size (at
// least 1 MB: an image whose size is not known yet still needs room). v
// is what the caller read of those quotas already, or nil.
func (s *Service) insertWithinQuota(ctx context.Context, rec *schemas.Image, v *quotaView) (*schemas.Image, error) {
	rec.User, rec.Group = s.owner(ctx)
	own := usage{images: 1, sizeMB: max(sizeMB(rec.Size), 1)}
	var img *schemas.Image
	undo := func() error { return s.images.Purge(ctx, rec.ID) }
	err := s.withinQuota(ctx, rec, own, true, v,
		func() (err error) { img, err = s.insert(ctx, rec); return err }, undo)
	if err != nil {
		return img, err
	}
	// The record is written: a datastore-delete that began before this
	// check sees its mark here; one that begins after it sees the image.
	if err := s.datastoreStays(ctx, rec.Datastore); err != nil {
		return nil, errors.Join(err, undo())
	}
	return img, nil
}

// reserveSize checks, before an image becomes READY, that its size as
// reported fits its quotas, and records it on the LOCKED image so that
// other checks count it. A refusal is returned as is, for the caller to
// end the import in ERROR.
func (s *Service) reserveSize(ctx context.Context, id int64, sagaID string, virtualSize int64) error {
	img, _, err := s.images.Get(ctx, id)
	if err != nil || img.SagaID != sagaID || State(img.State) != StateLocked {
		return nil // the commit finds out what became of it
	}
	write := func() error {
		_, _, err := s.images.Update(ctx, id, func(img *schemas.Image) error {
			if img.SagaID != sagaID || State(img.State) != StateLocked || img.Size == virtualSize {
				return errNoChange
			}
			img.Size = virtualSize
			return nil
		})
		return err
	}
	return s.withinQuota(ctx, img, usage{images: 1, sizeMB: sizeMB(virtualSize)}, false, nil, write, func() error { return nil })
}

// newImageQuotas reads the quotas a new image id of the caller's in
// datastore ds counts against, for sizeAllowance and then for the check
// of its record (insertWithinQuota).
func (s *Service) newImageQuotas(ctx context.Context, ds string, id int64) (*quotaView, error) {
	user, group := s.owner(ctx)
	return s.readQuotas(ctx, &schemas.Image{ID: id, User: user, Group: group, Datastore: ds})
}

// sizeAllowance is the largest virtual size (bytes) the SIZE quotas of v
// leave image id in datastore ds, and which quota leaves the least; 0
// when none limits SIZE. It is advice for the converter (a bigger import
// is refused before anything is stored); the commit's check (reserveSize)
// is the one that counts.
func (v *quotaView) sizeAllowance(ds string, id int64) (int64, string) {
	var (
		left int64 = -1
		by   string
	)
	for _, h := range v.holders {
		if !limited(h.limits.SizeMb) {
			continue
		}
		l := max(h.limits.SizeMb-usageIn(v.all, h.owns, ds, id).sizeMB, 0)
		if left < 0 || l < left {
			left = l
			by = fmt.Sprintf("%s %s's quota SIZE %d MB in datastore %s", h.kind, h.name, h.limits.SizeMb, ds)
			if h.kind == holderDatastore {
				by = fmt.Sprintf("datastore %s's capacity of %d MB (LIMIT_MB)", ds, h.limits.SizeMb)
			}
		}
	}
	if left < 0 {
		return 0, ""
	}
	// 0 would mean "no limit" to the converter: one byte refuses all.
	return max(left*mib, 1), by
}
