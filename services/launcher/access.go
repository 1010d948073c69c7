package launcher

// Who may act on what: the sender of a command is what the NATS server
// authenticated (bus.Msg.Sender), a user's groups are the catalog's record,
// and the rule is OpenNebula's (package acl). Templates and VMs have an
// owner, a group and the nine bits (new ones 600, umask 177); the oneadmin
// group may do anything; the restricted template attributes are the
// oneadmin group's.

import (
	"context"
	"errors"
	"strings"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// senderOf is m's sender as a user, with the groups the catalog records;
// ok is false for a service (trusted with what the server lets it send)
// and for a sender the catalog does not know. A command asks the catalog
// once: authorize, the restricted attributes and the new object's group
// all read the answer handle left in ctx (withSender).
func (s *Service) senderOf(ctx context.Context, m *bus.Msg) (u acl.User, ok bool, err error) {
	if bus.UserOf(m) == "" {
		return acl.User{}, false, nil
	}
	memo, _ := ctx.Value(senderKey{}).(*sender)
	if memo != nil && memo.known {
		return memo.user, memo.ok, nil
	}
	u, ok, err = s.userNamed(ctx, m.Sender)
	if err == nil && memo != nil {
		*memo = sender{user: u, ok: ok, known: true}
	}
	return u, ok, err
}

// sender is the catalog's answer about a command's sender, once asked.
type sender struct {
	user  acl.User
	ok    bool
	known bool
}

type senderKey struct{}

// withSender is ctx with room for the answer about its command's sender:
// handle gives each command its own.
func withSender(ctx context.Context) context.Context {
	return context.WithValue(ctx, senderKey{}, &sender{})
}

// userNamed is user name with the groups the catalog records; ok is false
// for a name the catalog does not know.
func (s *Service) userNamed(ctx context.Context, name string) (u acl.User, ok bool, err error) {
	return bus.CatalogUser(ctx, s.bus, name)
}

// fromAdmin reports whether m's sender is in the oneadmin group: only they
// may write the restricted attributes (OpenNebula's VM_RESTRICTED_ATTR).
func (s *Service) fromAdmin(ctx context.Context, m *bus.Msg) (bool, error) {
	u, ok, err := s.senderOf(ctx, m)
	return ok && u.IsAdmin(), err
}

// ownership is who a new template or VM belongs to: its creator and their
// primary group, with OpenNebula's umask (600). A service may create one
// for a user (onBehalfOf: a marketplace import); what a service creates on
// its own is the administrators'.
func (s *Service) ownership(ctx context.Context, m *bus.Msg, onBehalfOf string) (user, group, perms string, err error) {
	user, group, perms = acl.AdminUser, acl.AdminGroup, acl.New(acl.DefaultUmask).Octal()
	var u acl.User
	var ok bool
	switch {
	case bus.UserOf(m) != "":
		user = m.Sender
		u, ok, err = s.senderOf(ctx, m)
	case onBehalfOf != "":
		user = onBehalfOf
		u, ok, err = s.userNamed(ctx, user)
	default:
		return user, group, perms, nil
	}
	if err != nil {
		return "", "", "", err
	}
	if ok && len(u.Groups) > 0 {
		group = u.Groups[0]
	}
	return user, group, perms, nil
}

// object is a template or VM as package acl sees it. One recorded before
// owners existed has no user or no group: it is then the
// administrators'; one without bits is its owner's alone (600).
func object(kind string, id int64, owner, group, perms string) acl.Object {
	if owner == "" {
		owner = acl.AdminUser
	}
	if group == "" {
		group = acl.AdminGroup
	}
	return acl.Object{Kind: kind, ID: id, Owner: owner, Group: group, Perms: acl.PermsOf(perms)}
}

func templateObject(t *schemas.VMTemplate) acl.Object {
	return object("template", t.ID, t.User, t.Group, t.Permissions)
}

func vmObject(vm *schemas.VM) acl.Object {
	return object("VM", vm.ID, vm.User, vm.Group, vm.Permissions)
}

// objectOf is the template or VM command m names: instantiate's
// template_id, a template command's id, any other command's VM id. found
// is false when it names none, or one that does not exist (the handler
// says so).
func (s *Service) objectOf(ctx context.Context, m *bus.Msg) (obj acl.Object, found bool, err error) {
	template := m.Name == schemas.CommandLauncherInstantiate || strings.HasPrefix(m.Name, "template-")
	id, ok := schemas.PeekObjectID(m.Data)
	if m.Name == schemas.CommandLauncherInstantiate {
		id, ok = schemas.PeekTemplateID(m.Data)
	}
	if !ok {
		return acl.Object{}, false, nil
	}
	if template {
		t, _, err := s.templates.Get(ctx, id)
		if err != nil {
			return acl.Object{}, false, notFoundIsNone(err)
		}
		return templateObject(t), true, nil
	}
	rec, _, err := s.vms.Get(ctx, id)
	if err != nil {
		return acl.Object{}, false, notFoundIsNone(err)
	}
	return vmObject(&rec.VM), true, nil
}

// notFoundIsNone is err, except a record that does not exist: nothing
// to protect.
func notFoundIsNone(err error) error {
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil
	}
	return err
}

// authorize checks what m's schema says a user needs on the template or
// VM it names (x-slipway access): use a template to instantiate it,
// manage it to update or delete it, admin to chown or chgrp it; manage a
// VM to power it off, resume, terminate it or save its disks. A service
// passes.
func (s *Service) authorize(ctx context.Context, m *bus.Msg) error {
	access := schemas.AccessOf(Name, m.Name)
	if access == "" || bus.UserOf(m) == "" {
		return nil
	}
	obj, found, err := s.objectOf(ctx, m)
	if err != nil || !found {
		return err
	}
	u, _, err := s.senderOf(ctx, m)
	if err != nil {
		return err
	}
	if err := acl.Check(u, obj, acl.LevelOf(access), m.Name); err != nil {
		id := obj.ID
		return &refusal{id: &id, err: bus.WithCode(schemas.CodeForbidden, err)}
	}
	return nil
}

// asker is who asked a query, as a user; service is true for a service,
// which sees everything.
func (s *Service) asker(ctx context.Context) (u acl.User, service bool, err error) {
	name := bus.QuerySender(ctx)
	if schemas.IsService(name) {
		return acl.User{}, true, nil
	}
	u, _, err = s.userNamed(ctx, name)
	return u, false, err
}

// visible reports whether the asker of a query may see obj: use, as
// OpenNebula asks of `onetemplate show` and `onevm show`.
func visible(u acl.User, service bool, obj acl.Object) bool {
	return service || acl.Allowed(u, obj, acl.Use)
}

// mayShow is visible as a query's answer: 403 unless the asker may use obj.
func mayShow(u acl.User, service bool, obj acl.Object) error {
	if !service {
		if err := acl.Check(u, obj, acl.Use, "show"); err != nil {
			return bus.Forbidden(err)
		}
	}
	return nil
}
