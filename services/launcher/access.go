package launcher

// Who may act on what: the sender of a command is what the NATS server
// authenticated (bus.Msg.Sender), a user's groups are the catalog's record,
// and the rule is OpenNebula's (package acl). A VM is its user's alone
// (OpenNebula's default permissions, 600), and the oneadmin group may do
// anything; the restricted template attributes are the oneadmin group's.

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// senderOf is m's sender as a user, with the groups the catalog records;
// ok is false for a service (trusted with what the server lets it send)
// and for a sender the catalog does not know.
func (s *Service) senderOf(ctx context.Context, m *bus.Msg) (u acl.User, ok bool, err error) {
	if bus.UserOf(m) == "" {
		return acl.User{}, false, nil
	}
	rec, err := bus.Ask(ctx, s.bus, schemas.QryCatalogUser, schemas.CatalogUserRequest{Name: m.Sender})
	switch {
	case bus.IsNotFound(err):
		return acl.User{Name: m.Sender}, false, nil
	case err != nil:
		return acl.User{}, false, fmt.Errorf("the catalog's record of user %s: %w", m.Sender, err)
	}
	return acl.User{Name: rec.Name, Groups: rec.Groups}, true, nil
}

// fromAdmin reports whether m's sender is in the oneadmin group: only they
// may write the restricted attributes (OpenNebula's VM_RESTRICTED_ATTR).
func (s *Service) fromAdmin(ctx context.Context, m *bus.Msg) (bool, error) {
	u, ok, err := s.senderOf(ctx, m)
	return ok && u.IsAdmin(), err
}

// authorize checks what m's schema says a user needs on the VM it names
// (x-slipway access): its owner or the oneadmin group. A service passes; a
// VM that has no user (made by a service, or before users existed) is
// the administrators'.
func (s *Service) authorize(ctx context.Context, m *bus.Msg) error {
	access := schemas.AccessOf(Name, m.Name)
	if access == "" || bus.UserOf(m) == "" {
		return nil
	}
	id, ok := schemas.PeekObjectID(m.Data)
	if !ok {
		return nil
	}
	rec, _, err := s.vms.Get(ctx, id)
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil // nothing to protect: the handler says the VM does not exist
	}
	if err != nil {
		return err
	}
	u, _, err := s.senderOf(ctx, m)
	if err != nil {
		return err
	}
	owner := rec.User
	if owner == "" {
		owner = acl.AdminUser
	}
	obj := acl.Object{Kind: "VM", ID: id, Owner: owner, Group: acl.AdminGroup, Perms: acl.New(acl.DefaultUmask)}
	if err := acl.Check(u, obj, acl.LevelOf(access), m.Name); err != nil {
		return &refusal{id: &id, err: bus.WithCode(schemas.CodeForbidden, err)}
	}
	return nil
}
