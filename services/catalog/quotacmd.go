package catalog

// The quota commands (user-quota, group-quota) and the usage the account
// queries report; the checks themselves are in quota.go.

import (
	"cmp"
	"context"
	"slices"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// quotaReport is qs with the usage of the images owns picks, for every
// datastore.
func (s *Service) quotaReport(all []schemas.Image, qs []schemas.DatastoreQuota, owns func(*schemas.Image) bool) []schemas.DatastoreQuota {
	out := make([]schemas.DatastoreQuota, 0, len(s.cfg.Datastores))
	for _, ds := range s.cfg.Datastores {
		q := limitsIn(qs, ds.Name)
		u := usageIn(all, owns, ds.Name, -1)
		q.ImagesUsed, q.SizeMbUsed = &u.images, &u.sizeMB
		out = append(out, q)
	}
	return out
}

// setQuota is qs with the limits given for datastore ds; an entry left
// with the default limits is dropped, as OpenNebula does.
func setQuota(qs []schemas.DatastoreQuota, ds string, images, size *int64) []schemas.DatastoreQuota {
	q := limitsIn(qs, ds)
	if images != nil {
		q.Images = *images
	}
	if size != nil {
		q.SizeMb = *size
	}
	out := slices.DeleteFunc(slices.Clone(qs), func(e schemas.DatastoreQuota) bool { return e.Datastore == ds })
	if q.Images != QuotaDefault || q.SizeMb != QuotaDefault {
		out = append(out, q)
	}
	slices.SortFunc(out, func(a, b schemas.DatastoreQuota) int { return cmp.Compare(a.Datastore, b.Datastore) })
	if len(out) == 0 {
		return nil
	}
	return out
}

func (s *Service) userQuota(ctx context.Context, m *bus.Msg, req schemas.UserQuota) error {
	u, err := changeQuota(ctx, s, s.users.users, "user", acl.AdminUser, req.Name, req.Datastore,
		func(u *schemas.User) { u.Quotas = setQuota(u.Quotas, req.Datastore, req.Images, req.SizeMb) })
	if err != nil {
		return err
	}
	return s.emitAccount(ctx, m, schemas.EventCatalogUserUpdated, u.Name, schemas.UserUpdated{User: *u})
}

func (s *Service) groupQuota(ctx context.Context, m *bus.Msg, req schemas.GroupQuota) error {
	g, err := changeQuota(ctx, s, s.users.groups, "group", acl.AdminGroup, req.Name, req.Datastore,
		func(g *schemas.Group) { g.Quotas = setQuota(g.Quotas, req.Datastore, req.Images, req.SizeMb) })
	if err != nil {
		return err
	}
	return s.emitAccount(ctx, m, schemas.EventCatalogGroupUpdated, g.Name, schemas.GroupUpdated{Group: *g})
}

// changeQuota applies set to the user or group name (kind) in st, in a
// datastore that exists; the oneadmin one (exempt) has no quota to set.
func changeQuota[T any](ctx context.Context, s *Service, st *kvstore.Store[string, T], kind, exempt, name, ds string, set func(*T)) (*T, error) {
	if name == exempt {
		return nil, refuse("the %s %s has no quota: OpenNebula enforces none on it", exempt, kind)
	}
	if _, err := s.datastore(ctx, ds); err != nil {
		return nil, err
	}
	return updateNamed(ctx, st, kind, name, func(v *T) error { set(v); return nil })
}
