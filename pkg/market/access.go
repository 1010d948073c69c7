package market

// Who may use a marketplace: OpenNebula's rule (package acl) on its owner,
// group and bits. Marketplaces are the administrators' (only they create,
// change and delete them); use is what a user needs to see one, list its
// apps and import from it. The sender of a command or query is what the
// NATS server authenticated; a user's groups are the catalog's record.

import (
	"context"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// owned gives mk its owner (the administrator who made it; oneadmin for a
// service), the oneadmin group and the default bits.
func owned(mk *Market, m *bus.Msg) {
	mk.User, mk.Group, mk.Permissions = acl.AdminUser, acl.AdminGroup, defaultPerms.Octal()
	if m != nil && bus.UserOf(m) != "" {
		mk.User = m.Sender
	}
}

// marketObject is mk as package acl sees it.
func marketObject(mk *Market) acl.Object {
	o := acl.Object{Kind: "marketplace", ID: mk.ID, Owner: mk.User, Group: mk.Group, Perms: defaultPerms}
	if o.Owner == "" {
		o.Owner = acl.AdminUser
	}
	if o.Group == "" {
		o.Group = acl.AdminGroup
	}
	if p, err := acl.ParseOctal(mk.Permissions); err == nil {
		o.Perms = p
	}
	return o
}

// asker is who sent a command or asked a query, as a user; service is
// true for a service, which passes every check.
func (s *Service) asker(ctx context.Context, sender string) (u acl.User, service bool, err error) {
	if schemas.IsService(sender) {
		return acl.User{}, true, nil
	}
	u, _, err = bus.CatalogUser(ctx, s.bus, sender)
	return u, false, err
}

// mayUse checks that u (service: a service, which may) may use mk: nil,
// or package acl's refusal for operation op.
func mayUse(u acl.User, service bool, mk *Market, op string) error {
	if service {
		return nil
	}
	return acl.Check(u, marketObject(mk), acl.Use, op)
}

// queryMayUse is mayUse for the asker of a query: 403 when they may not.
func (s *Service) queryMayUse(ctx context.Context, mk *Market) error {
	u, service, err := s.asker(ctx, bus.QuerySender(ctx))
	if err != nil {
		return err
	}
	if err := mayUse(u, service, mk, "show"); err != nil {
		return bus.Forbidden(err)
	}
	return nil
}

// visibleMarkets are the marketplaces of all that the asker of a query may
// use, by ID.
func (s *Service) visibleMarkets(ctx context.Context, all []Market) (map[int64]bool, error) {
	u, service, err := s.asker(ctx, bus.QuerySender(ctx))
	if err != nil {
		return nil, err
	}
	out := map[int64]bool{}
	for i := range all {
		if mayUse(u, service, &all[i], "list") == nil {
			out[all[i].ID] = true
		}
	}
	return out, nil
}
